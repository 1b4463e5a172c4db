"""The one lookup of a value a policy names by Secret reference (a webhook's URL or HMAC key)."""

from handoff.adapters.kube import KubeApi, KubeError
from handoff.domain.policy import SecretKey


async def secret_value(api: KubeApi, namespace: str, ref: SecretKey | None) -> str:
    """The referenced key of a Secret in the namespace; a KubeError says what is missing."""
    if ref is None:
        raise KubeError(0, "no URL or Secret reference")
    return await api.secret_value(namespace, ref.name, ref.key)

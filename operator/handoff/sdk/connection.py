"""How an agent reaches the API server and its own Redis user, failing in sentences."""

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from handoff.adapters.kube import Credentials, KubeApi, KubeconfigError, KubeError
from handoff.sdk.errors import (
    Forbidden,
    HandoffError,
    kube_failure,
    kubeconfig_failure,
    redis_failure,
)


def kube_api(kubeconfig: str | None, context: str | None) -> KubeApi:
    """A client with the agent's own credentials (kubeconfig, else in-cluster), renewed as they
    expire, rotate on disk or are refused."""
    try:
        return KubeApi(Credentials.load(kubeconfig, context))
    except (KubeconfigError, OSError, ValueError, TypeError) as e:
        raise HandoffError(kubeconfig_failure(e, kubeconfig, context)) from e


async def redis_url(api: KubeApi, namespace: str, agent: str) -> str:
    """The agent's Redis URL, from the Secret the operator keeps for it."""
    secret = f"handoff-redis-{agent}"
    try:
        data = await api.read_secret(namespace, secret)
    except KubeError as e:
        if e.status not in (403, 404):
            raise kube_failure(e, f"read the Secret {secret}", agent, namespace) from e
        why = "forbidden" if e.status == 403 else "not found"
        raise Forbidden(
            f"{agent} cannot read its Redis credentials, the Secret {secret} in {namespace}"
            f" ({why}). The operator makes it, and lets the agent read it, once a Ready policy"
            f" governs {agent} and the operator runs with a Redis (--redis-url; 'handoff dev up'"
            f" starts both): check 'kubectl -n {namespace} get aap', or give the Agent a redis_url"
        ) from e
    if "url" not in data:
        raise HandoffError(f"the Secret {secret} has no key 'url': the operator writes it")
    return data["url"]


async def redis_client(url: str, agent: str) -> "redis_asyncio.Redis":
    """A client that answered a PING (a closed Redis fails here, not in the first proposal)."""
    client = redis_asyncio.from_url(url, socket_timeout=30, socket_connect_timeout=5)
    try:
        await client.ping()
    except RedisError as e:
        await client.aclose()
        raise redis_failure(e, f"connect to Redis as {agent}") from e
    return client

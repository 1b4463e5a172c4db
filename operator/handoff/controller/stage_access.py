"""The Roles of a policy's approval stages, kept equal to its stages: applied as the policy
changes, and those of stages it no longer declares deleted (the right to approve a stage that
is gone must go with it). Built by ``access.stage_objects``; applied here."""

from handoff.adapters.kube import KubeApi, resource_path
from handoff.controller.access import stage_objects
from handoff.domain.policy import CompiledPolicy

RBAC = "rbac.authorization.k8s.io"
KINDS = ("rolebindings", "roles")  # the binding first: no moment with a binding to nothing


async def sync_stage_access(api: KubeApi, policy: CompiledPolicy, uid: str) -> None:
    """Apply the stages' Roles and RoleBindings; delete those of stages that are gone."""
    documents = stage_objects(policy, uid)
    for document in documents:
        await api.apply(document)
    keep = {document["metadata"]["name"] for document in documents}
    await remove_stage_access(api, policy.namespace, policy.name, keep)


async def remove_stage_access(
    api: KubeApi, namespace: str, policy: str, keep: set[str] | None = None
) -> None:
    """Delete the stage Roles and RoleBindings of ``policy`` but those named in ``keep``."""
    selector = f"handoff.dev/policy={policy},handoff.dev/stage"
    for kind in KINDS:
        path = resource_path(RBAC, "v1", kind, namespace)
        listing = await api.request("GET", path, params={"labelSelector": selector})
        for item in (listing or {}).get("items") or []:
            name = item["metadata"]["name"]
            if name not in (keep or set()):
                await api.delete_if_present(resource_path(RBAC, "v1", kind, namespace, name))

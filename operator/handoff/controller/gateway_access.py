"""What the MCP gateway may read of Secrets: in each namespace, exactly the Secrets its MCPServers
name as credentials, and nothing anywhere else.

The gateway's ClusterRole holds no right on Secrets. For every namespace with an MCPServer that
names a credentials Secret, the operator keeps the Role and RoleBinding ``handoff-gateway-
credentials`` granting the gateway's ServiceAccount ``get`` on those Secrets by name
(``resourceNames``); when the last such MCPServer goes, so do they. The gateway still sends
upstream only a Secret annotated ``handoff.dev/mcp-server: <server>`` (whoever writes the
Secret decides where it may go); this bounds what a compromised gateway could read to those.
"""

import logging
from typing import Any

from handoff.adapters.kube import KubeApi, resource_path

log = logging.getLogger("handoff.operator")

RBAC = "rbac.authorization.k8s.io"
ROLE = "handoff-gateway-credentials"
DEFAULT_ACCOUNT = "handoff-system/handoff-gateway"


def credentials_access(
    namespace: str, secrets: list[str], account: tuple[str, str]
) -> list[dict[str, Any]]:
    """The Role and RoleBinding that let ``account`` get ``secrets`` of ``namespace``. Pure."""
    meta = {"name": ROLE, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "handoff"}}  # fmt: skip
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
            "resourceNames": sorted(set(secrets))}  # fmt: skip
    return [
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": meta, "rules": [rule]},
        {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": account[1], "namespace": account[0]}]},
    ]  # fmt: skip


def parse_account(value: str) -> tuple[str, str] | None:
    """``namespace/name`` of the gateway's ServiceAccount; None (empty) when no gateway runs."""
    namespace, _, name = value.strip().partition("/")
    return (namespace, name) if namespace and name else None


class GatewayAccess:
    def __init__(self, api: KubeApi, account: tuple[str, str] | None) -> None:
        self.api = api
        self.account = account

    async def sync(self, namespace: str) -> None:
        """Make the namespace's Role name exactly the Secrets its MCPServers name now."""
        if self.account is None:
            return
        listing = await self.api.get(
            resource_path("handoff.dev", "v1alpha1", "mcpservers", namespace)
        )
        secrets = [
            str(name)
            for item in listing.get("items") or []
            if (name := ((item.get("spec") or {}).get("credentials") or {}).get("secretName"))
        ]
        if not secrets:
            for kind in ("rolebindings", "roles"):
                await self.api.delete_if_present(resource_path(RBAC, "v1", kind, namespace, ROLE))
            return
        for document in credentials_access(namespace, secrets, self.account):
            await self.api.apply(document)

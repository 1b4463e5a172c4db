"""What the MCP gateway may read of Secrets: in each namespace, exactly the Secrets its MCPServers
name as credentials AND that their owners marked for one of those servers, and nothing else.

The gateway's ClusterRole holds no right on Secrets. For every namespace with an MCPServer that
names a credentials Secret annotated ``handoff.dev/mcp-server: <that server>``, the operator keeps
the Role and RoleBinding ``handoff-gateway-credentials`` granting the gateway's ServiceAccount
``get`` on those Secrets by name (``resourceNames``); when none is left, so are they. Writing an
MCPServer that names another Secret (a database password, a token) does not let the gateway read
it: whoever may write the Secret decides, with the annotation, whether the gateway may read it
and for which server. The operator looks again when an MCPServer changes and when a Secret with
the annotation does.
"""

import logging
from typing import Any

from handoff.adapters.kube import KubeApi, NotFound, resource_path
from handoff.domain.mcpsecrets import marked_for

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
        self.named: dict[str, set[str]] = {}  # namespace -> the Secrets its MCPServers name

    def names(self, namespace: str, secret: str) -> bool:
        """Whether an MCPServer of ``namespace`` names Secret ``secret`` (as last synced)."""
        return secret in self.named.get(namespace, set())

    async def sync(self, namespace: str) -> None:
        """Make the namespace's Role name exactly the Secrets its MCPServers name now."""
        if self.account is None:
            return
        listing = await self.api.get(
            resource_path("handoff.dev", "v1alpha1", "mcpservers", namespace)
        )
        wanted: dict[str, set[str]] = {}  # Secret -> the servers naming it
        for item in listing.get("items") or []:
            name = ((item.get("spec") or {}).get("credentials") or {}).get("secretName")
            if name:
                wanted.setdefault(str(name), set()).add(str(item["metadata"]["name"]))
        self.named[namespace] = set(wanted)
        if not wanted:
            self.named.pop(namespace, None)
        secrets = [name for name, servers in sorted(wanted.items())
                   if await self._marked(namespace, name, servers)]  # fmt: skip
        if not secrets:
            for kind in ("rolebindings", "roles"):
                await self.api.delete_if_present(resource_path(RBAC, "v1", kind, namespace, ROLE))
            return
        for document in credentials_access(namespace, secrets, self.account):
            await self.api.apply(document)

    async def _marked(self, namespace: str, name: str, servers: set[str]) -> bool:
        """Whether Secret ``name`` is annotated for one of the ``servers`` that name it."""
        try:
            secret = await self.api.get(resource_path("", "v1", "secrets", namespace, name))
        except NotFound:
            return False
        return marked_for(secret, servers)

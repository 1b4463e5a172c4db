"""The Redis credentials a policy provisions: one ACL user per governed agent, shared by the
policies that govern it, which can keep its own working state and read its own decision stream,
and nothing else; its password in a Secret only that agent may read."""

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any, Protocol

from handoff.adapters.kube import KubeApi, NotFound, resource_path
from handoff.adapters.redis_acl import RedisAdmin, RedisError
from handoff.controller.credentials import MANAGED_BY, RBAC, owned_secret
from handoff.controller.provisioning import ProvisionError
from handoff.domain.policy import CompiledPolicy
from handoff.domain.resources import PolicyJSON

REDIS_RECHECK = timedelta(seconds=60)


class Governs(Protocol):
    """Whether any policy other than ``exclude`` governs ``namespace/agent``."""

    def __call__(self, namespace: str, agent: str, *, exclude: str) -> bool: ...


class RedisCredentials:
    """One ACL user per governed agent, shared by the policies that govern it."""

    def __init__(self, api: KubeApi, redis: RedisAdmin, governs: Governs) -> None:
        self.api = api
        self.redis = redis
        self.governs = governs

    @staticmethod
    def secret_name(agent: str) -> str:
        return f"handoff-redis-{agent}"

    def secret_names(self, policy: CompiledPolicy, spec: dict[str, Any]) -> list[str]:
        return []  # each agent's own Role reads its Secret; the policy's Role serves all agents

    async def ensure(
        self, policy: CompiledPolicy, body: PolicyJSON, now: datetime
    ) -> datetime | None:
        come_back: datetime | None = None
        for agent in sorted(policy.service_accounts):
            path = resource_path("", "v1", "secrets", policy.namespace, self.secret_name(agent))
            try:
                current = await self.api.get(path)
                password = base64.b64decode(current["data"]["password"]).decode()
            except (NotFound, KeyError):
                current, password = None, secrets.token_urlsafe(24)
            try:
                user, saved = await self.redis.ensure_agent(policy.namespace, agent, password)
            except RedisError as e:
                raise ProvisionError(str(e)) from e
            if not saved:  # no aclfile: a Redis restart forgets the user, so set it again soon
                come_back = now + REDIS_RECHECK
            if current is None:
                url = self.redis.url_for(user, password)
                secret = owned_secret(
                    body, self.secret_name(agent), labels={"handoff.dev/agent": agent},
                    data={"username": user, "password": password, "url": url,
                          "host": self.redis.host, "port": str(self.redis.port)},
                )  # fmt: skip
                await self.api.apply(secret)
            for document in self._access(policy.namespace, agent):
                await self.api.apply(document)
        return come_back

    def _access(self, namespace: str, agent: str) -> list[dict[str, Any]]:
        """A Role per agent that reads its own Redis Secret, and no other agent's."""
        name = self.secret_name(agent)
        meta = {
            "name": name,
            "namespace": namespace,
            "labels": MANAGED_BY | {"handoff.dev/agent": agent},
        }
        read_own = {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": [name],
        }
        return [
            {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": meta, "rules": [read_own]},
            {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": meta,
             "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": agent, "namespace": namespace}]},
        ]  # fmt: skip

    async def remove(self, body: PolicyJSON) -> None:
        meta = body["metadata"]
        namespace = meta["namespace"]
        for agent in (body["spec"].get("agents") or {}).get("serviceAccounts") or []:
            if self.governs(namespace, agent, exclude=meta["name"]):
                continue  # another policy still governs it: its Redis user stays
            try:
                await self.redis.remove_agent(namespace, agent)
            except RedisError as e:
                raise ProvisionError(str(e)) from e
            name = self.secret_name(agent)
            for group, kind in (("", "secrets"), (RBAC, "rolebindings"), (RBAC, "roles")):
                version = "v1"
                await self.api.delete_if_present(
                    resource_path(group, version, kind, namespace, name)
                )

"""Credentials a policy provisions for the agents it governs.

- ``PostgresCredentials``: for each ``spec.credentials[].postgres``, a login role that can only
  read, and a Secret (host, port, database, username, password, uri) that only the governed agents
  may read. Rotated every ``rotateEvery``; dropped with the policy.
- ``RedisCredentials`` (``redis_credentials.py``): for each governed agent, a Redis ACL user
  that can keep its own working state and read its own decision stream, and nothing else.

The Secrets both write, and the helpers they share, are here.
"""

import base64
import hashlib
import logging
import re
import secrets
from datetime import datetime
from typing import Any, cast
from urllib.parse import quote

from handoff import API_VERSION
from handoff.adapters.kube import KubeApi, NotFound, resource_path
from handoff.adapters.postgres import AdminConnection, DatabaseError
from handoff.controller.provisioning import ProvisionError
from handoff.domain.durations import parse_duration
from handoff.domain.policy import CompiledPolicy
from handoff.domain.resources import PolicyJSON
from handoff.domain.timefmt import format_time, parse_time

log = logging.getLogger("handoff.operator")

ROTATED_AT = "handoff.dev/rotated-at"
ROLE_ANNOTATION = "handoff.dev/postgres-role"
ADMIN_ANNOTATION = "handoff.dev/admin-secret"
DATABASE_ANNOTATION = "handoff.dev/database"
POLICY_LABEL = "handoff.dev/policy"
CREDENTIAL_LABEL = "handoff.dev/credential"
MANAGED_BY = {"app.kubernetes.io/managed-by": "handoff"}
RBAC = "rbac.authorization.k8s.io"


def role_name(namespace: str, policy: str, credential: str) -> str:
    """A PostgreSQL identifier (at most 63 bytes) unique to the credential."""
    raw = f"handoff_{namespace}_{policy}_{credential}"
    clean = re.sub(r"[^a-z0-9_]", "_", raw.lower())
    if len(clean) <= 63:
        return clean
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{clean[:52]}_{digest}"


def _owner(body: PolicyJSON) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentActionPolicy",
        "name": meta["name"],
        "uid": meta["uid"],
    }


def owned_secret(
    body: PolicyJSON,
    name: str,
    *,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    data: dict[str, str],
) -> dict[str, Any]:
    """A Secret beside the policy, owned by it."""
    namespace = body["metadata"]["namespace"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": MANAGED_BY | labels,
            "annotations": annotations or {},
            "ownerReferences": [_owner(body)],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def read_secret(api: KubeApi, namespace: str, name: str) -> dict[str, str]:
    try:
        return await api.read_secret(namespace, name)
    except NotFound as e:
        raise ProvisionError(f"Secret {namespace}/{name} does not exist") from e


class PostgresCredentials:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def secret_names(self, policy: CompiledPolicy, spec: dict[str, Any]) -> list[str]:
        return [c["secretName"] for c in spec.get("credentials") or [] if "postgres" in c]

    async def ensure(
        self, policy: CompiledPolicy, body: PolicyJSON, now: datetime
    ) -> datetime | None:
        meta = body["metadata"]
        namespace = meta["namespace"]
        entries = [c for c in body["spec"].get("credentials") or [] if "postgres" in c]
        next_rotation: datetime | None = None
        for entry in entries:
            when = await self._ensure_one(policy, body, entry, now)
            if when is not None:
                next_rotation = when if next_rotation is None else min(next_rotation, when)
        # Credentials taken out of the spec go away, like the whole policy would.
        wanted = {entry["name"] for entry in entries}
        for secret in await self._generated(namespace, meta["name"]):
            if secret["metadata"]["labels"].get(CREDENTIAL_LABEL) not in wanted:
                await self._remove_one(namespace, secret)
        return next_rotation

    async def remove(self, body: PolicyJSON) -> None:
        meta = body["metadata"]
        for secret in await self._generated(meta["namespace"], meta["name"]):
            await self._remove_one(meta["namespace"], secret)

    async def _ensure_one(
        self, policy: CompiledPolicy, body: PolicyJSON, entry: dict[str, Any], now: datetime
    ) -> datetime | None:
        namespace = policy.namespace
        postgres = entry["postgres"]
        admin_name = postgres["adminSecretRef"]["name"]
        admin = await self._admin(namespace, admin_name)
        database = postgres["database"]
        role = role_name(namespace, policy.name, entry["name"])
        path = resource_path("", "v1", "secrets", namespace, entry["secretName"])
        try:
            current = await self.api.get(path)
        except NotFound:
            current = None
        every = parse_duration(entry["rotateEvery"]) if entry.get("rotateEvery") else None
        rotated_at = None
        if current is not None:
            annotations = current["metadata"].get("annotations") or {}
            if annotations.get(ROLE_ANNOTATION) == role and ROTATED_AT in annotations:
                rotated_at = parse_time(annotations[ROTATED_AT])
        due = rotated_at is None or (every is not None and now >= rotated_at + every)
        if not due:
            # The role may have been dropped behind our back; re-grant with the same password.
            password = base64.b64decode(current["data"]["password"]).decode() if current else ""
            await self._grant(admin, role, password, database, postgres)
            return rotated_at + every if (every and rotated_at) else None
        password = secrets.token_urlsafe(24)
        await self._grant(admin, role, password, database, postgres)
        host, port = admin.host, admin.port
        uri = f"postgresql://{quote(role)}:{quote(password)}@{host}:{port}/{quote(database)}"
        secret = owned_secret(
            body, entry["secretName"],
            labels={POLICY_LABEL: policy.name, CREDENTIAL_LABEL: entry["name"]},
            annotations={ROTATED_AT: format_time(now), ROLE_ANNOTATION: role,
                         ADMIN_ANNOTATION: admin_name, DATABASE_ANNOTATION: database},
            data={"host": host, "port": str(port), "database": database, "username": role,
                  "password": password, "uri": uri},
        )  # fmt: skip
        try:
            await self.api.apply(secret)
        except Exception:
            # The role would be a login nobody can use; take it back rather than leave it half-made.
            await admin.drop_role(role, database)
            raise
        log.info("policy %s/%s: PostgreSQL role %s %s", namespace, policy.name, role,
                 "rotated" if rotated_at else "created")  # fmt: skip
        return now + every if every else None

    async def _grant(
        self,
        admin: AdminConnection,
        role: str,
        password: str,
        database: str,
        postgres: dict[str, Any],
    ) -> None:
        try:
            warnings = await admin.ensure_read_only_role(
                role, password, database, postgres.get("schemas") or ["public"]
            )
        except DatabaseError as e:
            raise ProvisionError(str(e)) from e
        for warning in warnings:
            log.warning("role %s: %s", role, warning)

    async def _admin(self, namespace: str, name: str) -> AdminConnection:
        data = await read_secret(self.api, namespace, name)
        missing = [k for k in ("host", "port", "database", "username", "password") if k not in data]
        if missing:
            raise ProvisionError(f"admin Secret {name} lacks {', '.join(missing)}")
        return AdminConnection(
            data["host"], int(data["port"]), data["database"], data["username"], data["password"]
        )

    async def _generated(self, namespace: str, policy: str) -> list[dict[str, Any]]:
        listing = await self.api.request(
            "GET",
            resource_path("", "v1", "secrets", namespace),
            params={"labelSelector": f"{POLICY_LABEL}={policy},{CREDENTIAL_LABEL}"},
        )
        return cast(list[dict[str, Any]], listing.get("items") or [])

    async def _remove_one(self, namespace: str, secret: dict[str, Any]) -> None:
        annotations = secret["metadata"].get("annotations") or {}
        role, admin_name = annotations.get(ROLE_ANNOTATION), annotations.get(ADMIN_ANNOTATION)
        if role and admin_name:
            admin = await self._admin(namespace, admin_name)
            try:
                await admin.drop_role(role, annotations.get(DATABASE_ANNOTATION) or admin.database)
            except DatabaseError as e:
                raise ProvisionError(str(e)) from e
        name = secret["metadata"]["name"]
        await self.api.delete_if_present(resource_path("", "v1", "secrets", namespace, name))

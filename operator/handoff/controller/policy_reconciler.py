"""Policies: compile them, grant the access they declare, provision their credentials, and
take all of it away again when the policy goes (a finalizer, so nothing is left behind even on a
cluster without a garbage collector)."""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from handoff import GROUP, POLICIES, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.controller.access import (
    access_objects,
    agent_role_name,
    break_glass_objects,
    break_glass_role_name,
    reviewer_role_name,
)
from handoff.controller.concurrency import TaskSet
from handoff.controller.executor_access import ExecutorAccess, ExecutorAccessError
from handoff.controller.policies import PolicyIndex, policy_status
from handoff.controller.provisioning import Provisioner, ProvisionError, wait_for_access
from handoff.controller.scheduler import DeadlineScheduler
from handoff.controller.stage_access import remove_stage_access, sync_stage_access
from handoff.domain.breakglass import BreakGlassError, parse_break_glass
from handoff.domain.policy import CompiledPolicy
from handoff.domain.reasons import Reason
from handoff.domain.resources import PolicyJSON
from handoff.domain.timefmt import format_time

log = logging.getLogger("handoff.operator")

FINALIZER = "handoff.dev/cleanup"
RBAC = "rbac.authorization.k8s.io"


class PolicyReconciler:
    def __init__(
        self,
        api: KubeApi,
        clock: Callable[[], datetime],
        provisioners: Sequence[Provisioner] = (),
    ) -> None:
        self.api = api
        self.clock = clock
        self.index = PolicyIndex()
        self.provisioners = list(provisioners)
        self.executors = ExecutorAccess(api)  # the Kubernetes executor's identity per policy
        self.scheduler = DeadlineScheduler(self._on_timer, clock)
        self._locks: defaultdict[Hashable, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._failures: dict[tuple[str, str], int] = {}
        self._health: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._tasks = TaskSet()

    async def load_all(self) -> None:
        """Compile every policy before the first request is classified (startup)."""
        listing = await self.api.get(resource_path(GROUP, VERSION, POLICIES))
        for item in listing.get("items") or []:
            if not item["metadata"].get("deletionTimestamp"):
                self.index.put(item)
        self._count()

    async def refresh(self, namespace: str) -> None:
        """Compile the namespace's policies as the API has them now: a request may race ahead of
        the policy watch, and a NoPolicy decision must not rest on a stale view."""
        listing = await self.api.get(resource_path(GROUP, VERSION, POLICIES, namespace))
        names = set()
        for item in listing.get("items") or []:
            if not item["metadata"].get("deletionTimestamp"):
                names.add(item["metadata"]["name"])
                self.index.put(item)
        for policy in self.index.in_namespace(namespace):
            if policy.name not in names:
                self.index.remove(namespace, policy.name)

    async def changed(self, body: PolicyJSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        async with self._locks[key]:
            if meta.get("deletionTimestamp"):
                await self._finalize(body)
            else:
                await self._reconcile(body)

    def deleted(self, namespace: str, name: str) -> None:
        self.index.remove(namespace, name)
        self.scheduler.cancel((namespace, name))
        self._failures.pop((namespace, name), None)
        self._count()

    async def _reconcile(self, body: PolicyJSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if FINALIZER not in (meta.get("finalizers") or []):
            try:
                body = await self._set_finalizers(
                    body, [*(meta.get("finalizers") or []), FINALIZER]
                )
            except (Conflict, NotFound):
                return  # a newer version is on its way to us
        policy = self.index.put(body)
        self._count()
        problems: list[str] = []
        secrets = [
            name
            for provisioner in self.provisioners
            for name in provisioner.secret_names(
                policy, cast(dict[str, Any], body.get("spec") or {})
            )
        ]
        for document in access_objects(policy, meta["uid"], secrets):
            await self.api.apply(document)
        await sync_stage_access(self.api, policy, meta["uid"])
        come_back, glass = await self._break_glass(policy, body)
        await wait_for_access(self.api, policy)
        try:
            await self.executors.ensure(policy, body)
        except ExecutorAccessError as e:
            problems.append(str(e))
        for provisioner in self.provisioners:
            try:
                when = await provisioner.ensure(policy, body, self.clock())
            except ProvisionError as e:
                problems.append(str(e))
                continue
            if when is not None:
                come_back = when if come_back is None else min(come_back, when)
        # Held (tier 4, PolicyNotReady) while what it needs is not in place; released once it is.
        self.index.hold(*key, "; ".join(problems))
        self._count()
        if problems:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(2 ** (failures - 1), 60)
            come_back = self.clock() + timedelta(seconds=delay)
            metrics.RECONCILE_ERRORS.labels(kind="credentials").inc()
            log.warning("policy %s/%s: %s; retrying in %ss", *key, "; ".join(problems), delay)
        else:
            self._failures.pop(key, None)
        if come_back is not None:
            self.scheduler.arm(key, come_back)
        await self._write_status(policy, body, problems, glass)

    async def _break_glass(
        self, policy: CompiledPolicy, body: PolicyJSON
    ) -> tuple[datetime | None, tuple[str, Reason, str] | None]:
        """Grant or withdraw the break-glass Role; when to look again, and the condition."""
        now = self.clock()
        condition: tuple[str, Reason, str] | None = None
        try:
            grant = parse_break_glass(body["metadata"].get("annotations"), now)
        except BreakGlassError as e:
            grant, condition = None, ("False", Reason.BREAK_GLASS_INVALID, str(e))
        if grant is not None and grant.active(now):
            for document in break_glass_objects(policy, body["metadata"]["uid"], grant):
                await self.api.apply(document)
            log.warning("policy %s/%s: %s", policy.namespace, policy.name, grant.describe())
            return grant.until, ("True", Reason.BREAK_GLASS_ACTIVE, grant.describe())
        for kind in ("rolebindings", "roles"):
            path = resource_path(RBAC, "v1", kind, policy.namespace,
                                 break_glass_role_name(policy.name))  # fmt: skip
            await self.api.delete_if_present(path)
        if grant is not None:
            message = f"ended at {format_time(grant.until)}; {', '.join(grant.groups)} no longer"
            condition = ("False", Reason.BREAK_GLASS_ENDED, message + " hold break-glass")
        return None, condition

    def health_changed(self, namespace: str, name: str, health: list[dict[str, Any]]) -> None:
        """Notification delivery changed: show it in the policy's status (soon, off the caller)."""
        self._health[(namespace, name)] = health
        self._tasks.spawn(self._write_health(namespace, name))

    async def _write_health(self, namespace: str, name: str) -> None:
        path = resource_path(GROUP, VERSION, POLICIES, namespace, name) + "/status"
        patch = {"status": {"notifications": self._health[(namespace, name)]}}
        try:
            await self.api.merge_patch(path, patch)
        except KubeError as e:
            log.warning(
                "policy %s/%s: could not record notification health: %s", namespace, name, e
            )

    async def _write_status(
        self,
        policy: CompiledPolicy,
        body: PolicyJSON,
        problems: list[str],
        glass: tuple[str, Reason, str] | None = None,
    ) -> None:
        old = body.get("status") or {}
        now = format_time(self.clock().replace(microsecond=0))
        new = policy_status(policy, old, now, problems, glass)
        if (policy.namespace, policy.name) in self._health:
            new["notifications"] = self._health[(policy.namespace, policy.name)]
        if all(old.get(k) == v for k, v in new.items()):
            return
        path = resource_path(GROUP, VERSION, POLICIES, policy.namespace, policy.name) + "/status"
        try:
            await self.api.merge_patch(path, {"status": new})
        except NotFound:
            return
        if policy.errors:
            log.warning(
                "policy %s/%s is not Ready: %s", policy.namespace, policy.name, policy.errors
            )

    async def _finalize(self, body: PolicyJSON) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        for provisioner in self.provisioners:
            try:
                await provisioner.remove(body)
            except ProvisionError as e:
                log.warning("policy %s/%s: cleanup: %s; retrying", namespace, name, e)
                self.scheduler.arm((namespace, name), self.clock() + timedelta(seconds=2))
                return
        await self.executors.remove(body)
        for kind in ("rolebindings", "roles"):
            for role in (agent_role_name(name), reviewer_role_name(name),
                         break_glass_role_name(name)):  # fmt: skip
                await self.api.delete_if_present(resource_path(RBAC, "v1", kind, namespace, role))
        await remove_stage_access(self.api, namespace, name)
        remaining = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        try:
            await self._set_finalizers(body, remaining)
        except (Conflict, NotFound):
            return
        self.deleted(namespace, name)
        log.info("policy %s/%s removed with its roles and credentials", namespace, name)

    async def _set_finalizers(self, body: PolicyJSON, finalizers: list[str]) -> PolicyJSON:
        meta = body["metadata"]
        path = resource_path(GROUP, VERSION, POLICIES, meta["namespace"], meta["name"])
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        return cast(PolicyJSON, await self.api.merge_patch(path, patch))

    async def _on_timer(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        try:
            body = await self.api.get(resource_path(GROUP, VERSION, POLICIES, namespace, name))
        except NotFound:
            self.deleted(namespace, name)
            return
        try:
            await self.changed(body)
        except KubeError as e:
            log.warning("policy %s/%s: %s", namespace, name, e)
            self.scheduler.arm(key, self.clock() + timedelta(seconds=2))

    def _count(self) -> None:
        everything = self.index.all()
        ready = sum(1 for p in everything if p.ready)
        metrics.POLICIES_READY.labels(ready="true").set(ready)
        metrics.POLICIES_READY.labels(ready="false").set(len(everything) - ready)

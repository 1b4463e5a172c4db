"""Gather, decide, apply: the operator's work for one object at a time.

Each method reads what ``decide`` needs, calls it, and applies the ``Step``: one status patch
guarded by the object's resourceVersion (so a request is decided exactly once, even with two
operators or a stale event), one Event, metrics, and the next wake-up in the scheduler.
"""

import asyncio
import logging
import socket
from collections import defaultdict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, cast

from handoff import GROUP, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.scheduler import DeadlineScheduler
from handoff.domain.decide import Event, RequestState, Step, decide
from handoff.domain.reasons import Reason
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import format_time

log = logging.getLogger("handoff.operator")

REQUESTS = "actionrequests"
_ATTEMPTS = 8


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self, api: KubeApi, policies: PolicyReconciler, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.api = api
        self.clock = clock
        self.policies = policies
        self.scheduler = DeadlineScheduler(self._on_deadline, clock)
        self._locks: defaultdict[Hashable, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._pending: dict[tuple[str, str], str] = {}  # key -> tier, for the pending gauge
        self._instance = socket.gethostname()

    # -- requests ----------------------------------------------------------------------------

    async def request_changed(self, body: RequestJSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        async with self._locks[key]:
            try:
                await self._reconcile(body)
            finally:
                if not self._locks[key].locked():
                    self._locks.pop(key, None)

    def request_deleted(self, namespace: str, name: str) -> None:
        self.scheduler.cancel((namespace, name))
        self._set_pending((namespace, name), None)

    async def _on_deadline(self, key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        try:
            body = await self.api.get(resource_path(GROUP, VERSION, REQUESTS, namespace, name))
        except NotFound:
            self.request_deleted(namespace, name)
            return
        await self.request_changed(body)

    async def _reconcile(self, body: RequestJSON) -> None:
        started = self.clock()
        for _ in range(_ATTEMPTS):
            meta = body["metadata"]
            namespace, name = meta["namespace"], meta["name"]
            state = RequestState.from_json(body)
            step = decide(self.policies.index.in_namespace(namespace), state, self.clock())
            if step.decision is not None and step.decision.reason == Reason.NO_POLICY:
                await self.policies.refresh(namespace)
                step = decide(self.policies.index.in_namespace(namespace), state, self.clock())
            if step.patch is not None:
                path = resource_path(GROUP, VERSION, REQUESTS, namespace, name) + "/status"
                patch = {
                    "metadata": {"resourceVersion": meta["resourceVersion"]},
                    "status": step.patch,
                }
                try:
                    body = await self.api.merge_patch(path, patch)
                except Conflict:
                    body = await self.api.get(
                        resource_path(GROUP, VERSION, REQUESTS, namespace, name)
                    )
                    continue
                except NotFound:
                    self.request_deleted(namespace, name)
                    return
            await self._apply(body, state, step)
            metrics.RECONCILE_SECONDS.observe((self.clock() - started).total_seconds())
            return
        metrics.RECONCILE_ERRORS.labels(kind="request").inc()
        raise KubeError(409, f"{namespace}/{name} kept changing; will retry")

    async def _apply(self, body: RequestJSON, state: RequestState, step: Step) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        status = body.get("status") or {}
        if step.decision is not None:
            self.scheduler.cancel(key)
            self._set_pending(key, None)
            decision = step.decision
            tier = str(status.get("tier", ""))
            metrics.ACTION_REQUESTS.labels(
                namespace=key[0],
                policy=str(status.get("policy") or ""),
                tier=tier,
                outcome=str(decision.outcome),
                reason=str(decision.reason),
            ).inc()
            metrics.DECISION_SECONDS.labels(tier=tier, outcome=str(decision.outcome)).observe(
                max((decision.at - state.created).total_seconds(), 0.0)
            )
            log.info(
                "%s/%s %s: %s (%s)",
                key[0], key[1], decision.outcome, decision.reason, decision.message,
            )  # fmt: skip
        elif status.get("decision"):
            self.scheduler.cancel(key)
            self._set_pending(key, None)
        elif step.wake_at is not None:
            self.scheduler.arm(key, step.wake_at)
            self._set_pending(key, str(status.get("tier", "")))
        if step.event is not None:
            await self._post_event(body, step.event)

    def _set_pending(self, key: tuple[str, str], tier: str | None) -> None:
        before = self._pending.pop(key, None)
        if before is not None:
            metrics.PENDING.labels(namespace=key[0], tier=before).dec()
        if tier is not None:
            self._pending[key] = tier
            metrics.PENDING.labels(namespace=key[0], tier=tier).inc()

    async def _post_event(self, body: RequestJSON, event: Event) -> None:
        meta = body["metadata"]
        now = format_time(self.clock())
        record: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ActionRequest",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "handoff-operator"},
            "reportingComponent": "handoff.dev/operator",
            "reportingInstance": self._instance,
        }
        try:
            await self.api.create(resource_path("", "v1", "events", meta["namespace"]), record)
        except KubeError as e:  # an Event is a courtesy: never let it block a decision
            log.warning("could not post event for %s/%s: %s", meta["namespace"], meta["name"], e)

"""Rollbacks and post-incident reviews: the requests the operator files itself, and the
original's ``RolledBack`` once its undo is carried out.

A reviewer's Rollback review is turned into a rollback request (or, for the Kubernetes executor,
the object is put back as it was); a break-glass approval always leaves a post-incident review
request behind. Both are filed under trusted names (``filing.Filer``).
"""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from handoff import GROUP, POLICIES, VERSION
from handoff.adapters.kube import Conflict, KubeApi, KubeError, resource_path
from handoff.controller.events import Events
from handoff.controller.filing import Filer
from handoff.controller.kubernetes_executor import KubernetesExecutor
from handoff.controller.publishing import Publisher
from handoff.controller.scheduler import DeadlineScheduler
from handoff.controller.status import ATTEMPTS, StatusWriter
from handoff.domain.breakglass import BreakGlassError, parse_break_glass, post_incident_request
from handoff.domain.decide import Event, Review
from handoff.domain.executors import KUBERNETES, kubernetes_change
from handoff.domain.filing import POST_INCIDENT_OF, ROLLBACK_OF
from handoff.domain.reasons import Filing, Phase, Reason, Rollback
from handoff.domain.resources import RequestJSON
from handoff.domain.rollback import requested_rollback, rollback_request
from handoff.domain.timefmt import format_time

log = logging.getLogger("handoff.operator")


@dataclass
class Rollbacks:
    status: StatusWriter
    events: Events
    publisher: Publisher
    scheduler: DeadlineScheduler
    clock: Callable[[], datetime]
    kubernetes: KubernetesExecutor | None
    _reviewed: set[str] = field(default_factory=set)  # break-glass approvals whose review is filed
    filer: Filer = field(init=False)  # files rollbacks and post-incident reviews, trusted names

    def __post_init__(self) -> None:
        self.api: KubeApi = self.status.api
        self.filer = Filer(self.status.api)

    def forget(self, uid: str) -> None:
        self._reviewed.discard(uid)

    async def file_post_incident_review(self, body: RequestJSON) -> None:
        """A break-glass approval always leaves a post-incident review request behind."""
        status, meta = body.get("status") or {}, body["metadata"]
        decision = status.get("decision") or {}
        if decision.get("reason") != Reason.BREAK_GLASS_APPROVED or meta["uid"] in self._reviewed:
            return
        reason = "(the break-glass annotation was removed before the review was filed)"
        path = resource_path(GROUP, VERSION, POLICIES, meta["namespace"], str(status["policy"]))
        with contextlib.suppress(KubeError, BreakGlassError):
            policy = await self.api.get(path)
            grant = parse_break_glass(policy["metadata"].get("annotations"), self.clock())
            reason = grant.reason if grant is not None else reason
        document = post_incident_request(
            cast(dict[str, Any], body), tuple(decision.get("by") or ()), reason
        )
        # Found when filed before (a restart): once is enough. Never suppressed by a squatter.
        filed = await self.filer.file(
            document, meta["name"], POST_INCIDENT_OF, "post-incident review"
        )
        if filed.warning:
            await self.events.post(body, Event("Warning", Filing.NAME_TAKEN, filed.warning))
        if filed.fresh:
            message = f"approved under break-glass: filed {filed.name} for the policy's reviewers"
            log.warning("%s/%s was %s", meta["namespace"], meta["name"], message)
            await self.events.post(
                body, Event("Normal", Filing.POST_INCIDENT_REVIEW_FILED, message)
            )
        self._reviewed.add(meta["uid"])

    async def roll_back_if_asked(self, body: RequestJSON) -> None:
        """A reviewer appended a Rollback (admission checked their right and that it is
        reversible and the first): file the rollback plan as a request of its own, or, for the
        Kubernetes executor, put the object back as it was."""
        review = requested_rollback(body.get("status") or {})
        if review is None:
            return
        meta = body["metadata"]
        if body["spec"].get("execution") == KUBERNETES and self.kubernetes is not None:
            await self._restore(body, review)
            return
        filed = await self.filer.file(
            rollback_request(body, review), meta["name"], ROLLBACK_OF, "rollback"
        )  # found when filed before a restart; never the squatter of its name
        patch = {"rollback": {"by": review.reviewer, "at": format_time(self.clock()),
                              "request": filed.name}}  # fmt: skip
        try:
            body = await self.status.write(body, patch)
        except Conflict:
            self.scheduler.retry_soon(meta["namespace"], meta["name"])
            return
        if filed.warning:
            await self.events.post(body, Event("Warning", Filing.NAME_TAKEN, filed.warning))
        message = f"{review.reviewer} asked to roll it back: filed {filed.name}"
        await self.events.post(body, Event("Normal", Rollback.REQUESTED, message))
        await self.publisher.publish(body)

    async def _restore(self, body: RequestJSON, review: Review) -> None:
        assert self.kubernetes is not None
        change = kubernetes_change(body["spec"], body["metadata"]["namespace"])
        if isinstance(change, str):
            return
        now = format_time(self.clock())
        try:
            message = await self.kubernetes.restore(body, change)
            done = True
        except KubeError as e:
            message, done = f"the restore failed: {e.message}", False
        rollback = {"by": review.reviewer, "at": now, "request": body["metadata"]["name"],
                    "done": done, "doneAt": now, "message": message}  # fmt: skip
        patch: dict[str, Any] = {"rollback": rollback}
        if done:
            patch["phase"] = Phase.ROLLED_BACK
        try:
            body = await self.status.write(body, patch)
        except Conflict:
            self.scheduler.retry_soon(body["metadata"]["namespace"], body["metadata"]["name"])
            return
        reason = Rollback.ROLLED_BACK if done else Rollback.FAILED
        await self.events.post(body, Event("Normal" if done else "Warning", reason, message))
        await self.publisher.publish(body)

    async def rolled_back(self, undo: RequestJSON) -> None:
        """The rollback request was carried out: the original's phase becomes RolledBack, when
        the operator filed that rollback for it (spec.rollbackOf alone proves nothing)."""
        meta = undo["metadata"]
        for _ in range(ATTEMPTS):
            original, untrusted = await self.filer.undone(undo)
            if untrusted is not None:
                log.warning("%s/%s: %s", meta["namespace"], meta["name"], untrusted)
                event = Event("Warning", Filing.UNTRUSTED_ROLLBACK, untrusted)
                await self.events.post(undo, event)
                return
            if original is None:
                return
            rollback = dict((original.get("status") or {}).get("rollback") or {})
            if rollback.get("done"):
                return
            rollback |= {"done": True, "doneAt": format_time(self.clock()),
                         "message": f"undone by {meta['name']}"}  # fmt: skip
            try:
                original = await self.status.write(
                    original, {"phase": Phase.ROLLED_BACK, "rollback": rollback}
                )
            except Conflict:
                continue
            message = f"undone by {meta['name']}"
            await self.events.post(original, Event("Normal", Rollback.ROLLED_BACK, message))
            await self.publisher.publish(original)
            return

"""Requests that wait for people: their deadline and escalation timers, the pending gauge, the
announcements to the policy's notification targets (pending, escalated, decided), and how many
approvals came fast."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from handoff.adapters import metrics
from handoff.controller.notifications import Notifier
from handoff.controller.policies import PolicyIndex
from handoff.controller.scheduler import DEADLINE, ESCALATE, READ_AHEAD, DeadlineScheduler
from handoff.domain.announce import ESCALATED
from handoff.domain.decide import RequestState, fast_approvals
from handoff.domain.reasons import CLASSIFIED
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import parse_time

log = logging.getLogger("handoff.operator")
# A waiting request is read this long before its deadline, when the API server is not busy with
# decisions (Requests.read_ahead), so that a deadline that falls writes its decision at once.
READ_AHEAD_BY = timedelta(seconds=1)


@dataclass
class Waiting:
    policies: PolicyIndex
    scheduler: DeadlineScheduler
    notifier: Notifier | None
    clock: Callable[[], datetime]
    _pending: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> tier, the gauge
    _reviews_seen: dict[str, int] = field(default_factory=dict)  # uid -> reviews looked at
    # While a start's listing re-arms deadlines (rearm.py): the requests a pass or a timer has
    # handled since, whose listed status may be older than what that pass saw.
    _touched: set[tuple[str, str]] | None = None

    def wait(self, key: tuple[str, str], until: datetime, tier: str) -> None:
        if self._touched is not None:
            self._touched.add(key)
        self._arm(key, until)
        self._set_pending(key, tier)

    def _arm(self, key: tuple[str, str], until: datetime) -> None:
        self.scheduler.arm((DEADLINE, *key), until)
        if until - READ_AHEAD_BY > self.clock():
            self.scheduler.arm((READ_AHEAD, *key), until - READ_AHEAD_BY)
        else:
            self.scheduler.cancel((READ_AHEAD, *key))

    def begin_rearm(self) -> None:
        self._touched = set()

    def rearm(self, key: tuple[str, str], until: datetime, tier: str) -> bool:
        """Arm a deadline read from a start's listing, unless a pass has handled the request
        since (it knows better); whether it was armed."""
        if self._touched is None or key in self._touched:
            return False
        self._arm(key, until)
        self._set_pending(key, tier)
        return True

    def end_rearm(self) -> None:
        self._touched = None

    def stop(self, key: tuple[str, str], uid: str | None = None) -> None:
        """It is decided: its timers, its place in the gauge and its review count go."""
        if self._touched is not None:
            self._touched.add(key)
        self.scheduler.cancel((DEADLINE, *key))
        self.scheduler.cancel((READ_AHEAD, *key))
        self.scheduler.cancel((ESCALATE, *key))
        self._set_pending(key, None)
        if uid:
            self._reviews_seen.pop(uid, None)

    def announce(self, body: RequestJSON, event: str) -> None:
        if self.notifier is None:
            return
        status = body.get("status") or {}
        policy = self.policies.named(body["metadata"]["namespace"], status.get("policy"))
        if policy is not None:
            self.notifier.announce(policy, cast(dict[str, Any], body), event)

    def arm_escalation(self, body: RequestJSON) -> None:
        escalation = (body.get("status") or {}).get("escalation") or {}
        if escalation.get("at"):
            meta = body["metadata"]
            at = parse_time(escalation["at"])
            self.scheduler.arm((ESCALATE, meta["namespace"], meta["name"]), at)

    def escalate(self, body: RequestJSON) -> None:
        """The escalation timer fired: announce a request still undecided again."""
        status = body.get("status") or {}
        at = (status.get("escalation") or {}).get("at")
        if status.get("decision") or not at or parse_time(at) > self.clock():
            return  # decided, or its open stage escalates later or not at all
        meta = body["metadata"]
        log.info("%s/%s is still undecided: escalating", meta["namespace"], meta["name"])
        self.announce(body, ESCALATED)

    def count_fast_approvals(self, state: RequestState, uid: str) -> None:
        reviews = len(state.reviews)
        seen = self._reviews_seen.setdefault(uid, reviews)  # first sight (a restart): count none
        if reviews <= seen:
            return
        self._reviews_seen[uid] = reviews
        classified = next(
            (c for c in state.status.get("conditions") or [] if c.get("type") == CLASSIFIED),
            None,
        )
        if classified and classified.get("lastTransitionTime"):
            since = parse_time(classified["lastTransitionTime"])
            fast = fast_approvals(state, seen, since, self.clock())
            if fast:
                metrics.FAST_APPROVALS.labels(namespace=state.facts.namespace).inc(fast)

    def forget(self, key: tuple[str, str], uid: str | None) -> None:
        self.stop(key)
        if uid:
            self._reviews_seen.pop(uid, None)
            if self.notifier is not None:
                self.notifier.forget(uid)

    def _set_pending(self, key: tuple[str, str], tier: str | None) -> None:
        before = self._pending.pop(key, None)
        if before is not None:
            metrics.PENDING.labels(namespace=key[0], tier=before).dec()
        if tier is not None:
            self._pending[key] = tier
            metrics.PENDING.labels(namespace=key[0], tier=tier).inc()

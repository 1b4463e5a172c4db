"""The request handler: gather, decide, write, dispatch, for one request at a time.

Each pass reads what ``decide`` needs (the request, its policies, its ``when`` answers, its
budgets), calls it, writes the step's status patch guarded by the resourceVersion (a 409 reads
again and decides again), and hands each effect ``followups`` names to the handler of its
concern. Handlers do not call one another; this is where they meet.
"""

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import cast

from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, KubeError, NotFound
from handoff.adapters.sandbox import Sandbox
from handoff.controller import memory
from handoff.controller.budgets import Budgets
from handoff.controller.concurrency import KeyedLocks, Lull
from handoff.controller.events import Events
from handoff.controller.execution import Execution
from handoff.controller.grants import Grants
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.publishing import Publisher
from handoff.controller.readahead import ReadAhead
from handoff.controller.reports import ReportWriter
from handoff.controller.retention import Retention
from handoff.controller.rollback import Rollbacks
from handoff.controller.scheduler import (
    DEADLINE,
    ESCALATE,
    READ_AHEAD,
    RETAIN,
    RETRY,
    DeadlineScheduler,
)
from handoff.controller.status import ATTEMPTS, StatusWriter
from handoff.controller.waiting import READ_AHEAD_BY, Waiting
from handoff.controller.when import Answers, answers_for, with_when_results
from handoff.domain import followups as fx
from handoff.domain.decide import decide
from handoff.domain.model import Decision, RequestState, Step
from handoff.domain.reasons import Reason
from handoff.domain.resources import RequestJSON

log = logging.getLogger("handoff.operator")
CONCURRENCY = 16  # reconciles at once: below the API client's 32 connections
BURST = 500  # this many queued at once is a burst: give its memory back once it has passed


class Requests:
    def __init__(
        self,
        status: StatusWriter,
        policies: PolicyReconciler,
        clock: Callable[[], datetime],
        *,
        scheduler: DeadlineScheduler,
        locks: KeyedLocks,
        sandbox: Sandbox | None,
        events: Events,
        publisher: Publisher,
        reports: ReportWriter,
        budgets: Budgets,
        waiting: Waiting,
        rollbacks: Rollbacks,
        execution: Execution,
        retention: Retention,
        grants: Grants | None = None,
        lull: Lull | None = None,
    ) -> None:
        self.status, self.policies, self.clock = status, policies, clock
        self.scheduler, self.locks, self.sandbox = scheduler, locks, sandbox
        self.events, self.publisher, self.reports = events, publisher, reports
        self.budgets, self.waiting, self.rollbacks = budgets, waiting, rollbacks
        self.execution, self.retention, self.grants = execution, retention, grants
        # The resourceVersion of each status write whose watch echo has not come yet: the echo
        # of the operator's own write needs no second pass. Dropped when the echo comes (or a
        # pass writes nothing), so that no decided request keeps an entry.
        self._settled: dict[tuple[str, str], str] = {}
        # Requests read a moment before their deadline (read_ahead), until it falls or a newer
        # version comes by the watch: a second's worth of deadlines at most.
        self.ahead = ReadAhead()
        # At most this many reconciles talk to the API server at once. Past it, work waits here
        # rather than in the HTTP pool, where the wait counted against each call's timeout and a
        # burst of thousands of requests turned into timeouts and retries.
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._queued = 0  # reconciles waiting for a slot or in one
        self._burst = False  # more than BURST were queued at once since memory was released
        self._passes = 0  # reconciles since the C heap was last trimmed
        self.lull = lull or Lull()  # deadlines being decided: Events wait for none (events.py)

    def retry_soon(self, namespace: str, name: str, delay: timedelta = RETRY) -> None:
        self.scheduler.retry_soon(namespace, name, delay)

    async def changed(self, body: RequestJSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self.ahead.take(key)  # older than this
        async with self.locks.holding(key):
            if self._settled.get(key) == meta.get("resourceVersion"):
                del self._settled[key]
                return  # the echo of a version already handled in full (usually our own write)
            await self._pass(key, body)

    async def _pass(self, key: tuple[str, str], body: RequestJSON | None) -> None:
        """One reconcile of ``body``, or (None: a deadline or a retry) of the request read
        afresh: then the read and the pass share one slot, so that a wave of deadlines is
        decided in the order it fell. A read in one turn of the slots and the pass in a second
        put every pass of the wave behind every read of it."""
        self._queued += 1
        self._passes += 1
        self._burst = self._burst or self._queued > BURST
        try:
            policies = self.policies.index.in_namespace(key[0])
            if body is None:
                async with self._slots:
                    body = await self.status.read(*key)
                    answers = await answers_for(self.sandbox, policies, body)
                    await self._reconcile(body, answers)
            else:
                answers = await answers_for(self.sandbox, policies, body)
                async with self._slots:
                    await self._reconcile(body, answers)
        finally:
            self._queued -= 1
            if (self._burst or self._passes >= BURST) and not self._queued:
                asyncio.get_running_loop().call_later(1.0, self._after_burst)

    def _after_burst(self) -> None:
        """A burst has passed: give its memory back. A steady stream never queues BURST at
        once, yet leaves the same free pages behind (10,000 filed at 60/s: 16 KB per pending
        request in the resident set, 2 KB of it live), so every BURST passes the C heap is
        trimmed too: a millisecond, where the burst's full collection can take hundreds."""
        if self._queued:
            return  # not quiet a second later: the next pass to end asks again
        if self._burst:
            self._burst = False
            self._passes = 0
            memory.release()
        elif self._passes >= BURST:
            self._passes = 0
            memory.trim()

    async def deleted(self, namespace: str, name: str, uid: str | None = None) -> None:
        self._settled.pop((namespace, name), None)
        self.ahead.take((namespace, name))
        self.reports.decided.forget(namespace, name)
        self.scheduler.cancel((RETAIN, namespace, name))
        self.waiting.forget((namespace, name), uid)
        if uid:
            self.budgets.forget(uid)
            self.rollbacks.forget(uid)
            await self.publisher.forget(namespace, name, uid)

    async def on_timer(self, key: Hashable) -> None:
        kind, namespace, name = cast(tuple[str, str, str], key)
        if kind == DEADLINE:
            await self._decide_again((namespace, name))
            return
        if kind == READ_AHEAD:
            await self.read_ahead((namespace, name))
            return
        try:
            async with self._slots:
                body = await self.status.read(namespace, name)
        except NotFound:
            await self.deleted(namespace, name)
            return
        if kind == ESCALATE:
            self.waiting.escalate(body)
        else:
            assert kind == RETAIN
            await self.retention.retire(body)

    async def read_ahead(self, key: tuple[str, str]) -> None:
        """A deadline falls in a moment: read the request now, once no deadline is being decided
        (the deadlines of the second before come first), so that when it falls the decision is
        written without a read first. Creation times are whole seconds, so deadlines fall in
        waves; the read of each is one API call less in its wave. What the deadline decides is
        unchanged: the write is guarded by the version read, and a newer version (by the watch,
        or by a 409) is read again and decided anew."""
        await self.lull.wait(READ_AHEAD_BY.total_seconds() / 2)
        if self.scheduler.due((DEADLINE, *key)) is None or self.ahead.full:
            return  # decided meanwhile; or read when it falls
        self.ahead.reading(key)
        try:
            async with self._slots:
                body = await self.status.read(*key)
        except NotFound:
            return  # its deletion comes by the watch
        finally:
            newest = self.ahead.read(key)  # else overtaken by the watch: what was read is older
        # A pass under way (it began before the read did) decides what it read itself.
        if newest and self.scheduler.due((DEADLINE, *key)) is not None and key not in self.locks:
            self.ahead.keep(key, body)

    async def _decide_again(self, key: tuple[str, str]) -> None:
        """A deadline (or a retry) fell: the request as it is now, decided anew (as read a
        moment ago, when ``read_ahead`` did and nothing newer came since)."""
        self.lull.begin()  # the wave's Events and the next wave's reads wait for its writes
        try:
            async with self.locks.holding(key):
                self._settled.pop(key, None)  # the same version, decided anew
                try:
                    await self._pass(key, self.ahead.take(key))
                except NotFound:
                    await self.deleted(*key)
        finally:
            self.lull.end()

    async def _reconcile(self, body: RequestJSON, answers: Answers | None = None) -> None:
        started = self.clock()
        for _ in range(ATTEMPTS):
            meta = body["metadata"]
            namespace, name = meta["namespace"], meta["name"]
            state, step = await self._decide(body, answers)
            wrote = step.patch is not None
            if step.patch is not None:
                try:
                    body = await self.status.write(body, step.patch)
                except Conflict:
                    body = await self.status.read(namespace, name)
                    continue
                except NotFound:
                    await self.deleted(namespace, name)
                    return
            # The first status a request ever gets: nothing of it can have been published yet.
            first = wrote and not state.status
            if await self._dispatch(body, state, fx.followups(state, step, body), first) and wrote:
                self._settled[(namespace, name)] = body["metadata"]["resourceVersion"]
            else:  # no echo to wait for; or a retry comes through the scheduler
                self._settled.pop((namespace, name), None)
            metrics.RECONCILE_SECONDS.observe((self.clock() - started).total_seconds())
            return
        metrics.RECONCILE_ERRORS.labels(kind="request").inc()
        raise KubeError(409, f"{namespace}/{name} kept changing; will retry")

    async def _decide(
        self, body: RequestJSON, answers: Answers | None
    ) -> tuple[RequestState, Step]:
        namespace = body["metadata"]["namespace"]
        state = RequestState.from_json(body)
        if not state.decided:
            state = replace(state, budget_usage=self.budgets.usage(namespace, state.facts.agent))
        policies = self.policies.index.in_namespace(namespace)
        state = await with_when_results(self.sandbox, policies, state, answers)
        step = decide(policies, state, self.clock())
        if step.decision is not None and step.decision.reason == Reason.NO_POLICY:
            await self.policies.refresh(namespace)  # the policy watch may lag behind
            policies = self.policies.index.in_namespace(namespace)
            state = await with_when_results(self.sandbox, policies, state)
            step = decide(policies, state, self.clock())
        if self.grants is not None:  # a standing grant may approve what would wait for people
            step = await self.grants.cover(body, state, step, policies)
        return state, step

    async def _dispatch(  # noqa: PLR0912 - one case per effect, the table of who handles what
        self, body: RequestJSON, state: RequestState, effects: list[fx.Effect], first: bool = False
    ) -> bool:
        """Carry out each effect, in order; True when everything the status implies is out."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        published = True
        for effect in effects:
            match effect:
                case fx.Do.COUNT_FAST_APPROVALS:
                    self.waiting.count_fast_approvals(state, meta["uid"])
                case fx.Do.SPEND_BUDGET:
                    self.budgets.spend(body)
                case fx.CountDecision(decision):
                    _count_decision(body, state, decision)
                case fx.Do.STOP_WAITING:
                    self.waiting.stop(key, meta["uid"])
                case fx.Wait(until, tier):
                    self.waiting.wait(key, until, tier)
                case fx.Do.ARM_ESCALATION:
                    self.waiting.arm_escalation(body)
                case fx.Announce(event):
                    self.waiting.announce(body, event)
                case fx.Do.PUBLISH:
                    published = await self.publisher.publish(body, first=first)
                case fx.PostEvent(event):
                    self.events.post_soon(body, event)
                case fx.Do.FILE_POST_INCIDENT_REVIEW:
                    await self.rollbacks.file_post_incident_review(body)
                case fx.Do.FILE_ROLLBACK:
                    await self.rollbacks.roll_back_if_asked(body)
                case fx.Do.RUN_WEBHOOK:
                    await self.execution.run_webhook(body)
                case fx.Do.MARK_ROLLED_BACK:
                    await self.rollbacks.rolled_back(body)  # only a rollback it filed
                case fx.RunKubernetes(started_waiting):
                    await self.execution.run_kubernetes(body, started_waiting=started_waiting)
                case fx.Do.ARM_RETENTION:
                    self.retention.arm(body)
                case fx.Do.NOTE_FOR_REPORTS:
                    self.reports.decided.record(body)
        return published


def _count_decision(body: RequestJSON, state: RequestState, decision: Decision) -> None:
    meta, status = body["metadata"], body.get("status") or {}
    tier = str(status.get("tier", ""))
    metrics.ACTION_REQUESTS.labels(
        namespace=meta["namespace"],
        policy=str(status.get("policy") or ""),
        tier=tier,
        outcome=str(decision.outcome),
        reason=str(decision.reason),
    ).inc()
    metrics.DECISION_SECONDS.labels(tier=tier, outcome=str(decision.outcome)).observe(
        max((decision.at - state.created).total_seconds(), 0.0)
    )
    log.info("%s/%s %s: %s (%s)", meta["namespace"], meta["name"], decision.outcome,
             decision.reason, decision.message)  # fmt: skip

"""Gather, decide, apply: the operator's work for one request at a time.

Each pass reads what ``decide`` needs, calls it, and applies the ``Step``: one status patch
guarded by the object's resourceVersion (so a request is decided exactly once, even with two
operators or a stale event), one Event, metrics, the next wake-up in the scheduler, and the
records the new status implies (audit lines, the agent's decision message), published once each.
"""

import asyncio
import contextlib
import json
import logging
import socket
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from handoff import GROUP, POLICIES, REQUESTS, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.adapters.outbox import Outbox, OutboxError, RedisOutcomes
from handoff.adapters.sandbox import Sandbox
from handoff.adapters.webhooks import Delivery, DeliveryError, WebhookSender
from handoff.controller import memory
from handoff.controller.filing import Filer
from handoff.controller.gateway_records import after_gateway
from handoff.controller.kubernetes_executor import KubernetesExecutor
from handoff.controller.notifications import Notifier
from handoff.controller.outcomes import Notices, OutcomeReader, Rejected, Reported
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.reports import DecidedRequests
from handoff.controller.scheduler import DeadlineScheduler
from handoff.controller.when import Answers, answers_for, with_when_results
from handoff.domain.announce import DECIDED, ESCALATED, PENDING
from handoff.domain.breakglass import BreakGlassError, parse_break_glass, post_incident_request
from handoff.domain.decide import Event, RequestState, Review, Step, decide, fast_approvals
from handoff.domain.execution import EXECUTING, execution_patch
from handoff.domain.executors import KUBERNETES, MCP, WEBHOOK, kubernetes_change
from handoff.domain.filing import POST_INCIDENT_OF, ROLLBACK_OF
from handoff.domain.keys import AUDIT_STREAM, outcomes_key
from handoff.domain.policy import SecretKey, WebhookExecutor
from handoff.domain.reasons import CLASSIFIED, Filing, Reason
from handoff.domain.records import records
from handoff.domain.report import policy_report
from handoff.domain.resources import RequestJSON
from handoff.domain.rollback import requested_rollback, rollback_request
from handoff.domain.timefmt import format_time, parse_time

log = logging.getLogger("handoff.operator")

_ATTEMPTS = 8
RETRY = timedelta(seconds=2)

# Scheduler keys: (kind, namespace, name).
DEADLINE = "deadline"
ESCALATE = "escalate"
RETAIN = "retain"
REPORT_EVERY = timedelta(seconds=5)
EPOCH_EVERY = timedelta(seconds=2)  # how often the Redis server's run_id is compared
CONCURRENCY = 16  # reconciles at once: below the API client's 32 connections
BURST = 500  # this many queued at once is a burst: give its memory back once it has passed
audit_log = logging.getLogger("handoff.audit")  # one JSON line per transition, for log shipping


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        policies: PolicyReconciler,
        clock: Callable[[], datetime] = utcnow,
        *,
        outbox: Outbox | None = None,
        notifier: Notifier | None = None,
        kubernetes: KubernetesExecutor | None = None,
        retention: timedelta | None = None,
    ) -> None:
        self.api = api
        self.clock = clock
        self.policies = policies
        self.outbox = outbox
        self.notifier = notifier
        self.kubernetes = kubernetes
        self.retention = retention
        self.reports = True  # off when the cluster does not serve PolicyReports
        self._dirty: set[tuple[str, str]] = set()  # (namespace, agent) whose report is stale
        self._reported: dict[tuple[str, str], datetime] = {}
        self.decided = DecidedRequests()  # what the reports show, noted as requests go by
        # Budgets: when each auto-approval happened, by (namespace, policy, budget, agent).
        self._budget_hits: defaultdict[tuple[str, str, str, str], deque[datetime]] = defaultdict(
            deque
        )
        self._budget_counted: set[str] = set()
        self._reviewed: set[str] = set()  # break-glass approvals whose review request is filed
        self.filer = Filer(api)  # files rollbacks and post-incident reviews under trusted names
        self.owns: Callable[[str], bool] = lambda _namespace: True  # this shard's namespaces
        self.executor_sender = WebhookSender(attempts=3)
        self.sandbox: Sandbox | None = None  # where `when` expressions run, with a CPU budget
        self.scheduler = DeadlineScheduler(self._on_timer, clock)
        # One lock per request being worked on, dropped when its last user leaves (a lock kept
        # for every request ever seen grows without bound at scale).
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        # The resourceVersion each request was last fully handled at: the watch echo of the
        # operator's own status write carries it, and needs no second pass.
        self._settled: dict[tuple[str, str], str] = {}
        # At most this many reconciles talk to the API server at once. Past it, work waits here
        # rather than in the HTTP pool, where the wait counted against each call's timeout and a
        # burst of thousands of requests turned into timeouts and retries.
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._queued = 0  # reconciles waiting for a slot or in one
        self._event_slots = asyncio.Semaphore(CONCURRENCY // 2)  # Events posted at once
        self._courtesies: set[asyncio.Task[None]] = set()  # Events being posted
        self._burst = False  # more than BURST were queued at once since memory was released
        self._pending: dict[tuple[str, str], str] = {}  # key -> tier, for the pending gauge
        self._published: dict[str, set[str]] = {}  # uid -> dedup keys known to be published
        self._reviews_seen: dict[str, int] = {}  # uid -> reviews already looked at
        self._instance = socket.gethostname()

    def retry_soon(self, namespace: str, name: str, delay: timedelta = RETRY) -> None:
        self.scheduler.arm((DEADLINE, namespace, name), self.clock() + delay)

    @contextlib.asynccontextmanager
    async def _holding(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]

    async def request_changed(self, body: RequestJSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        async with self._holding(key):
            if self._settled.get(key) == meta.get("resourceVersion"):
                return  # the echo of a version already handled in full (usually our own write)
            self._queued += 1
            self._burst = self._burst or self._queued > BURST
            try:
                policies = self.policies.index.in_namespace(key[0])
                answers = await answers_for(self.sandbox, policies, body)
                async with self._slots:
                    await self._reconcile(body, answers)
            finally:
                self._queued -= 1
                if self._burst and not self._queued:
                    asyncio.get_running_loop().call_later(1.0, self._after_burst)

    def _after_burst(self) -> None:
        if self._burst and not self._queued:  # still quiet a second later
            self._burst = False
            memory.release()

    async def request_deleted(self, namespace: str, name: str, uid: str | None = None) -> None:
        self._settled.pop((namespace, name), None)
        self.decided.forget(namespace, name)
        self.scheduler.cancel((DEADLINE, namespace, name))
        self.scheduler.cancel((ESCALATE, namespace, name))
        self.scheduler.cancel((RETAIN, namespace, name))
        self._set_pending((namespace, name), None)
        if uid:
            self._published.pop(uid, None)
            self._budget_counted.discard(uid)
            self._reviewed.discard(uid)
            self._reviews_seen.pop(uid, None)
            if self.notifier is not None:
                self.notifier.forget(uid)
            if self.outbox is not None:
                try:
                    await self.outbox.forget(namespace, uid)
                except OutboxError as e:
                    log.warning("could not drop publication marks of %s/%s: %s", namespace, name, e)

    async def _on_timer(self, key: Hashable) -> None:
        kind, namespace, name = cast(tuple[str, str, str], key)
        try:
            async with self._slots:
                body = await self.api.get(resource_path(GROUP, VERSION, REQUESTS, namespace, name))
        except NotFound:
            await self.request_deleted(namespace, name)
            return
        if kind == ESCALATE:
            self._escalate(body)
        elif kind == RETAIN:
            await self._retire(body)
        else:
            self._settled.pop((namespace, name), None)  # a deadline: the same version, decided anew
            await self.request_changed(body)

    async def _reconcile(self, body: RequestJSON, answers: Answers | None = None) -> None:
        started = self.clock()
        for _ in range(_ATTEMPTS):
            meta = body["metadata"]
            namespace, name = meta["namespace"], meta["name"]
            state = RequestState.from_json(body)
            if not state.decided:
                state = replace(
                    state, budget_usage=self._budget_usage(namespace, state.facts.agent)
                )
            policies = self.policies.index.in_namespace(namespace)
            state = await with_when_results(self.sandbox, policies, state, answers)
            step = decide(policies, state, self.clock())
            if step.decision is not None and step.decision.reason == Reason.NO_POLICY:
                await self.policies.refresh(namespace)
                policies = self.policies.index.in_namespace(namespace)
                state = await with_when_results(self.sandbox, policies, state)
                step = decide(policies, state, self.clock())
            if step.patch is not None:
                try:
                    body = await self._patch_status(body, step.patch)
                except Conflict:
                    body = await self.api.get(
                        resource_path(GROUP, VERSION, REQUESTS, namespace, name)
                    )
                    continue
                except NotFound:
                    await self.request_deleted(namespace, name)
                    return
            published = await self._apply(body, state, step)
            await self._file_post_incident_review(body)
            if step.decision is None and state.decided:
                await self._roll_back_if_asked(body)
            if body["spec"].get("execution") == WEBHOOK:  # on the decision itself, or later
                await self._run_webhook(body)
            await after_gateway(body, self._rolled_back)  # an MCP rollback the gateway ran
            if self.kubernetes is not None and body["spec"].get("execution") == KUBERNETES:
                await self._run_kubernetes(
                    body, started_waiting=bool(step.patch and "deadline" in step.patch)
                )
            self._arm_retention(body)
            self.decided.record(body)
            if published:  # else a retry comes through the scheduler, for this same version
                self._settled[(namespace, name)] = body["metadata"]["resourceVersion"]
            metrics.RECONCILE_SECONDS.observe((self.clock() - started).total_seconds())
            return
        metrics.RECONCILE_ERRORS.labels(kind="request").inc()
        raise KubeError(409, f"{namespace}/{name} kept changing; will retry")

    async def _file_post_incident_review(self, body: RequestJSON) -> None:
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
            await self._post_event(body, Event("Warning", Filing.NAME_TAKEN, filed.warning))
        if filed.fresh:
            message = f"approved under break-glass: filed {filed.name} for the policy's reviewers"
            log.warning("%s/%s was %s", meta["namespace"], meta["name"], message)
            await self._post_event(
                body, Event("Normal", Filing.POST_INCIDENT_REVIEW_FILED, message)
            )
        self._reviewed.add(meta["uid"])

    async def _patch_status(self, body: RequestJSON, patch: dict[str, Any]) -> RequestJSON:
        meta = body["metadata"]
        path = resource_path(GROUP, VERSION, REQUESTS, meta["namespace"], meta["name"]) + "/status"
        document = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        return cast(RequestJSON, await self.api.merge_patch(path, document))

    async def _apply(self, body: RequestJSON, state: RequestState, step: Step) -> bool:
        """Everything a new status implies; True when all of it is published."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        status = body.get("status") or {}
        self._count_fast_approvals(state, meta["uid"])
        self._count_budget(body)
        if step.decision is not None:
            self._stop_waiting(key)
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
                key[0],
                key[1],
                decision.outcome,
                decision.reason,
                decision.message,
            )
            if state.status.get("deadline"):  # it waited for people: tell whoever listens
                self._announce(body, DECIDED)
        elif status.get("decision"):
            self._stop_waiting(key)
        elif step.wake_at is not None:
            self.scheduler.arm((DEADLINE, *key), step.wake_at)
            self._set_pending(key, str(status.get("tier", "")))
            if step.patch is not None and "deadline" in step.patch:  # it has just started waiting
                self._announce(body, PENDING)
            self._arm_escalation(body)
        # The agent's decision message first: it must not wait for an Event, a courtesy.
        published = await self._publish(body)
        if step.event is not None:
            self._post_event_soon(body, step.event)
        return published

    def _budget_usage(self, namespace: str, agent: str) -> dict[tuple[str, str], int]:
        now = self.clock()
        usage: dict[tuple[str, str], int] = {}
        for policy in self.policies.index.in_namespace(namespace):
            for budget in policy.budgets:
                hits = self._budget_hits[(namespace, policy.name, budget.name, agent)]
                while hits and hits[0] <= now - budget.per:
                    hits.popleft()
                usage[(policy.name, budget.name)] = len(hits)
        return usage

    def _count_budget(self, body: RequestJSON) -> None:
        """An auto-approval spends from every budget of its policy that covers its action."""
        status = body.get("status") or {}
        decision = status.get("decision") or {}
        uid = body["metadata"]["uid"]
        if (
            decision.get("reason") not in (Reason.AUTO_APPROVED, Reason.LOGGED)
            or uid in self._budget_counted
        ):
            return
        self._budget_counted.add(uid)
        namespace, agent, action = (
            body["metadata"]["namespace"],
            body["spec"]["agent"],
            body["spec"]["action"],
        )
        at = parse_time(decision["at"])
        for policy in self.policies.index.in_namespace(namespace):
            if policy.name != status.get("policy"):
                continue
            for budget in policy.budgets:
                if budget.covers(action):
                    hits = self._budget_hits[(namespace, policy.name, budget.name, agent)]
                    hits.append(at)
                    if (
                        len(hits) > 1 and hits[-2] > at
                    ):  # arrived out of order (a restart's listing)
                        self._budget_hits[(namespace, policy.name, budget.name, agent)] = deque(
                            sorted(hits)
                        )

    def _count_fast_approvals(self, state: RequestState, uid: str) -> None:
        reviews = len(state.reviews)
        seen = self._reviews_seen.setdefault(uid, reviews)  # first sight (a restart): count none
        if reviews > seen:
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

    def _stop_waiting(self, key: tuple[str, str]) -> None:
        self.scheduler.cancel((DEADLINE, *key))
        self.scheduler.cancel((ESCALATE, *key))
        self._set_pending(key, None)

    # -- rollback ------------------------------------------------------------------------------

    async def _run_kubernetes(self, body: RequestJSON, *, started_waiting: bool) -> None:
        """The Kubernetes executor's part: a dry-run preview for reviewers while the request
        waits, the change once it is approved, and nothing else."""
        assert self.kubernetes is not None
        meta, status = body["metadata"], body.get("status") or {}
        change = kubernetes_change(body["spec"], meta["namespace"])
        if isinstance(change, str):
            return  # refused at classification (Invalid)
        if started_waiting and not status.get("preview"):
            try:
                preview = await self.kubernetes.preview(body, change)
            except KubeError as e:
                preview = f"the dry run failed: {e.message}"
            await self.api.merge_patch(self._status_path(body), {"status": {"preview": preview}})
            return
        decision = status.get("decision") or {}
        if decision.get("outcome") != "Approved" or status.get("execution"):
            return
        try:
            outcome, message = "Executed", await self.kubernetes.execute(body, change)
        except KubeError as e:
            outcome, message = "Failed", f"the API server refused it: {e.message}"
        patch = execution_patch(status, outcome, message, self.clock())
        if patch is not None:
            body = await self._patch_status(body, patch)
            metrics.EXECUTIONS.labels(namespace=meta["namespace"], outcome=outcome).inc()
            await self._post_event(
                body, Event("Normal" if outcome == "Executed" else "Warning", outcome, message)
            )
            await self._publish(body)

    async def _run_webhook(self, body: RequestJSON) -> None:
        """Post the approved action to the policy's executor, signed, with the request's uid as
        the idempotency key. Marked Executing first: a restart before the answer posts again
        (the executor dedups on the key), never silently drops it."""
        meta, status = body["metadata"], body.get("status") or {}
        if (status.get("decision") or {}).get("outcome") != "Approved":
            return
        if (status.get("execution") or {}).get("outcome") in ("Executed", "Failed"):
            return
        policy = next((p for p in self.policies.index.in_namespace(meta["namespace"])
                       if p.name == status.get("policy")), None)  # fmt: skip
        if (status.get("execution") or {}).get("outcome") != EXECUTING:
            marker = {"execution": {"outcome": EXECUTING, "at": format_time(self.clock()),
                                    "message": "posting to the webhook executor"}}  # fmt: skip
            try:
                body = await self._patch_status(body, marker)
            except Conflict:
                return  # the next event brings the newer version
        if policy is None or policy.webhook is None:
            outcome, message = "Failed", "the policy no longer names a webhook executor"
        else:
            outcome, message = await self._post_to_executor(body, policy.webhook)
        patch = execution_patch(body.get("status") or {}, outcome, message, self.clock())
        if patch is None:
            return
        body = await self._patch_status(body, patch)
        metrics.EXECUTIONS.labels(namespace=meta["namespace"], outcome=outcome).inc()
        kind = "Normal" if outcome == "Executed" else "Warning"
        await self._post_event(body, Event(kind, outcome, message))
        await self._publish(body)
        if outcome == "Executed" and body["spec"].get("rollbackOf"):
            await self._rolled_back(body)

    async def _post_to_executor(
        self, body: RequestJSON, executor: WebhookExecutor
    ) -> tuple[str, str]:
        meta, spec, status = body["metadata"], body["spec"], body.get("status") or {}
        payload = {
            "idempotencyKey": meta["uid"],
            "request": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
            "agent": spec.get("agent"), "action": spec.get("action"), "target": spec.get("target"),
            "parameters": spec.get("parameters") or {}, "summary": spec.get("summary"),
            "approvedBy": (status.get("decision") or {}).get("by") or [],
            "specDigest": status.get("specDigest"),
        }  # fmt: skip
        try:
            url = executor.url or await self._secret_value(meta["namespace"], executor.url_secret)
            key = None
            if executor.hmac_secret is not None:
                key = (await self._secret_value(meta["namespace"], executor.hmac_secret)).encode()
            attempts = await self.executor_sender.send(Delivery(url, payload, meta["uid"], key))
        except (DeliveryError, KubeError) as e:
            return "Failed", f"the webhook executor did not accept it: {e}"
        return "Executed", f"the webhook executor accepted it (attempt {attempts})"

    async def _secret_value(self, namespace: str, ref: SecretKey | None) -> str:
        if ref is None:
            raise KubeError(0, "no URL or Secret reference")
        return await self.api.secret_value(namespace, ref.name, ref.key)

    def _status_path(self, body: RequestJSON) -> str:
        meta = body["metadata"]
        return resource_path(GROUP, VERSION, REQUESTS, meta["namespace"], meta["name"]) + "/status"

    async def _roll_back_if_asked(self, body: RequestJSON) -> None:
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
            body = await self._patch_status(body, patch)
        except Conflict:
            self.retry_soon(meta["namespace"], meta["name"])
            return
        if filed.warning:
            await self._post_event(body, Event("Warning", Filing.NAME_TAKEN, filed.warning))
        message = f"{review.reviewer} asked to roll it back: filed {filed.name}"
        await self._post_event(body, Event("Normal", "RollbackRequested", message))
        await self._publish(body)

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
            patch["phase"] = "RolledBack"
        try:
            body = await self._patch_status(body, patch)
        except Conflict:
            self.retry_soon(body["metadata"]["namespace"], body["metadata"]["name"])
            return
        await self._post_event(
            body,
            Event(
                "Normal" if done else "Warning", "RolledBack" if done else "RollbackFailed", message
            ),
        )
        await self._publish(body)

    async def _rolled_back(self, undo: RequestJSON) -> None:
        """The rollback request was carried out: the original's phase becomes RolledBack, when
        the operator filed that rollback for it (spec.rollbackOf alone proves nothing)."""
        meta = undo["metadata"]
        for _ in range(_ATTEMPTS):
            original, untrusted = await self.filer.undone(undo)
            if untrusted is not None:
                log.warning("%s/%s: %s", meta["namespace"], meta["name"], untrusted)
                await self._post_event(undo, Event("Warning", Filing.UNTRUSTED_ROLLBACK, untrusted))
                return
            if original is None:
                return
            rollback = dict((original.get("status") or {}).get("rollback") or {})
            if rollback.get("done"):
                return
            rollback |= {"done": True, "doneAt": format_time(self.clock()),
                         "message": f"undone by {meta['name']}"}  # fmt: skip
            try:
                original = await self._patch_status(
                    original, {"phase": "RolledBack", "rollback": rollback}
                )
            except Conflict:
                continue
            await self._post_event(
                original, Event("Normal", "RolledBack", f"undone by {meta['name']}")
            )
            await self._publish(original)
            return

    # -- records, announcements, outcomes -----------------------------------------------------

    async def _publish(self, body: RequestJSON) -> bool:
        """Publish what the status implies and was not published yet (the status is the outbox):
        to Redis when configured, and always as a JSON line on the audit log. True when all of it
        is out."""
        meta = body["metadata"]
        done = self._published.setdefault(meta["uid"], set())
        try:
            for record in records(body, AUDIT_STREAM, format_time(self.clock())):
                if record.dedup in done:
                    continue
                if self.outbox is not None:
                    fresh = await self.outbox.publish(meta["namespace"], meta["uid"], record)
                    if fresh and record.dedup == "decision" and record.fields.get("at"):
                        lag = self.clock() - parse_time(record.fields["at"])
                        metrics.OUTBOX_LAG_SECONDS.observe(max(lag.total_seconds(), 0.0))
                if record.stream == AUDIT_STREAM:
                    audit_log.info(json.dumps(record.fields, sort_keys=True))
                    self._dirty.add((meta["namespace"], str(body["spec"].get("agent", ""))))
                done.add(record.dedup)
        except OutboxError as e:
            metrics.PUBLISH_ERRORS.inc()
            log.warning("publishing %s/%s: %s; retrying", meta["namespace"], meta["name"], e)
            self.retry_soon(meta["namespace"], meta["name"])
            return False
        return True

    def _arm_retention(self, body: RequestJSON) -> None:
        """Decided requests are deleted after the retention period, counted from their last
        transition (decision, execution or rollback)."""
        status = body.get("status") or {}
        if self.retention is None or not status.get("decision"):
            return
        times = [status["decision"].get("at"), (status.get("execution") or {}).get("at"),
                 (status.get("rollback") or {}).get("doneAt")]  # fmt: skip
        last = max(parse_time(t) for t in times if t)
        meta = body["metadata"]
        self.scheduler.arm((RETAIN, meta["namespace"], meta["name"]), last + self.retention)

    async def follow_redis(self) -> None:
        """Redis that restarted or failed over may have lost acknowledged writes (the last
        second, with appendfsync everysec; more, on a lagging replica), and what this replica
        remembers as published would then be wrong. When the server's run_id changes, publish
        again whatever the statuses imply: the dedup marks that survived drop what is there."""
        assert self.outbox is not None
        seen = ""
        while True:
            await asyncio.sleep(EPOCH_EVERY.total_seconds())
            try:
                epoch = await self.outbox.epoch()
            except OutboxError:
                continue
            if seen and epoch != seen:
                log.warning("Redis restarted or failed over: publishing every decision again")
                await self._republish_all()
            seen = epoch

    async def _republish_all(self) -> None:
        try:
            listing = await self.api.get(resource_path(GROUP, VERSION, REQUESTS))
        except KubeError as e:
            log.warning("listing requests to publish them again: %s", e)
            return
        self._published.clear()
        for body in listing.get("items") or []:
            if self.owns(body["metadata"]["namespace"]) and (body.get("status") or {}).get("phase"):
                await self._publish(body)

    async def write_reports(self) -> None:
        """Every few seconds, rewrite the PolicyReport of each agent that had a transition."""
        while True:
            await asyncio.sleep(REPORT_EVERY.total_seconds())
            for namespace, agent in sorted(self._dirty):
                try:
                    await self._write_report(namespace, agent)
                except NotFound:
                    log.warning(
                        "this cluster serves no wgpolicyk8s.io PolicyReports: not writing any"
                    )
                    self.reports = False
                except KubeError as e:
                    log.warning("PolicyReport for %s/%s: %s; retrying", namespace, agent, e)
            if not self.reports:
                return

    async def _write_report(self, namespace: str, agent: str) -> None:
        started = self.clock()
        await self.api.apply(policy_report(namespace, agent, self.decided.of(namespace, agent)))
        self._dirty.discard((namespace, agent))
        self._reported[(namespace, agent)] = started

    async def _retire(self, body: RequestJSON) -> None:
        """Delete a request past its retention, only once its whole audit record is out."""
        meta = body["metadata"]
        if not await self._publish(body):
            return  # retried by _publish; retention comes round again after that
        agent = (meta["namespace"], str(body["spec"].get("agent", "")))
        decided_at = parse_time(
            (body.get("status") or {}).get("decision", {}).get("at") or meta["creationTimestamp"]
        )
        if (
            self.reports
            and self._reported.get(agent, datetime.min.replace(tzinfo=UTC)) < decided_at
        ):
            self._dirty.add(agent)  # its report must show it before it goes
            self.scheduler.arm(
                (RETAIN, meta["namespace"], meta["name"]), self.clock() + REPORT_EVERY * 2
            )
            return
        path = resource_path(GROUP, VERSION, REQUESTS, meta["namespace"], meta["name"])
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": meta["uid"]},
        }
        with contextlib.suppress(NotFound):
            await self.api.request("DELETE", path, options)
        log.info(
            "%s/%s deleted after its retention period; its audit record stays",
            meta["namespace"],
            meta["name"],
        )

    def _announce(self, body: RequestJSON, event: str) -> None:
        if self.notifier is None:
            return
        status = body.get("status") or {}
        policy = next(
            (p for p in self.policies.index.in_namespace(body["metadata"]["namespace"])
             if p.name == status.get("policy")),
            None,
        )  # fmt: skip
        if policy is not None:
            self.notifier.announce(policy, cast(dict[str, Any], body), event)

    def _arm_escalation(self, body: RequestJSON) -> None:
        escalation = (body.get("status") or {}).get("escalation") or {}
        if not escalation.get("at"):
            return
        meta = body["metadata"]
        self.scheduler.arm(
            (ESCALATE, meta["namespace"], meta["name"]), parse_time(escalation["at"])
        )

    def _escalate(self, body: RequestJSON) -> None:
        status = body.get("status") or {}
        if status.get("decision"):
            return
        meta = body["metadata"]
        log.info("%s/%s is still undecided: escalating", meta["namespace"], meta["name"])
        self._announce(body, ESCALATED)

    async def consume_outcomes(self, reader: RedisOutcomes) -> None:
        """Record what agents report after acting: phase Executed or Failed, once."""

        def streams() -> list[str]:
            governed = self.policies.index.all()
            return sorted(
                {outcomes_key(p.namespace, a) for p in governed for a in p.service_accounts}
            )

        notices = Notices(self.api, self._post_event)
        await OutcomeReader(reader, streams, self._record_outcome, notices).run()

    async def _record_outcome(self, reported: Reported) -> None:
        namespace, agent, name = reported.namespace, reported.agent, reported.name
        outcome, message = reported.outcome, reported.message
        path = resource_path(GROUP, VERSION, REQUESTS, namespace, name)
        try:
            body = await self.api.get(path)
        except NotFound:
            raise Rejected(f"there is no request {name} in {namespace}") from None
        if body["spec"].get("agent") != agent:
            raise Rejected(f"{agent} did not file {name}", name)
        if body["metadata"]["uid"] != reported.uid:
            raise Rejected(f"it names uid {reported.uid}, not this request's", name)
        if (execution := body["spec"].get("execution")) in (KUBERNETES, WEBHOOK, MCP):
            raise Rejected(f"Handoff's {execution} executor carries it out, not the agent", name)
        async with self._holding((namespace, name)):
            for _ in range(_ATTEMPTS):
                status = body.get("status") or {}
                patch = execution_patch(status, outcome, message, self.clock())
                if patch is None:
                    if not status.get("execution"):  # rejected: counted, its Events bounded
                        raise Rejected(f"it reports {outcome} for a request not approved", name)
                    # Recorded already: this entry is read again because what follows the record
                    # failed last time. Finish that (each step is idempotent); no second Event.
                    await self._after_outcome(body)
                    return
                try:
                    body = await self._patch_status(body, patch)
                    break
                except Conflict:
                    body = await self.api.get(path)
            else:  # not recorded: the entry stays pending and is read again
                raise Conflict(
                    409, f"{namespace}/{name} kept changing while its outcome was recorded"
                )
        metrics.EXECUTIONS.labels(namespace=namespace, outcome=outcome).inc()
        kind = "Normal" if outcome == "Executed" else "Warning"
        await self._post_event(body, Event(kind, outcome, message or "reported by the agent"))
        await self._after_outcome(body)

    async def _after_outcome(self, body: RequestJSON) -> None:
        """What a recorded outcome implies: the original of a carried-out rollback becomes
        RolledBack, and the transition is published. Both are idempotent, so an entry read again
        after a failure here finishes the work instead of skipping it."""
        execution = (body.get("status") or {}).get("execution") or {}
        if execution.get("outcome") == "Executed" and body["spec"].get("rollbackOf"):
            await self._rolled_back(body)
        await self._publish(body)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _set_pending(self, key: tuple[str, str], tier: str | None) -> None:
        before = self._pending.pop(key, None)
        if before is not None:
            metrics.PENDING.labels(namespace=key[0], tier=before).dec()
        if tier is not None:
            self._pending[key] = tier
            metrics.PENDING.labels(namespace=key[0], tier=tier).inc()

    def _post_event_soon(self, body: RequestJSON, event: Event) -> None:
        """Post a transition's Event beside the work: it does not hold a reconcile slot, so a
        slow Event write never delays the next request's decision."""
        task = asyncio.create_task(self._post_event(body, event, self._event_slots))
        self._courtesies.add(task)
        task.add_done_callback(self._courtesies.discard)

    async def _post_event(
        self, body: RequestJSON, event: Event, slots: asyncio.Semaphore | None = None
    ) -> None:
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
            async with slots or contextlib.nullcontext():
                await self.api.create(resource_path("", "v1", "events", meta["namespace"]), record)
        except KubeError as e:  # an Event is a courtesy: never let it block a decision
            log.warning("could not post event for %s/%s: %s", meta["namespace"], meta["name"], e)

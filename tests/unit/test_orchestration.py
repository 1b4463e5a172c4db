"""The controller's orchestration, against an in-memory API server (``handoff.testing.FakeKube``),
``MemoryOutbox`` and ``FixedClock``: what the request handler writes, posts, publishes and arms,
and what it does when the API server or Redis answers badly. The same wiring as the operator's
(``controller.operator.build``); only the clock, the API server and Redis are stand-ins."""

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from handoff import GROUP, POLICIES, REQUESTS, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import KubeError, resource_path
from handoff.controller.operator import Operator, build
from handoff.controller.outcomes import Reported
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.reports import REPORT_EVERY
from handoff.controller.scheduler import DEADLINE, RETAIN
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.timefmt import format_time
from handoff.testing import FakeKube, FixedClock, MemoryOutbox

NS, AGENT = "agents", "payments-agent"
NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
SPEC = {
    "agents": {"serviceAccounts": [AGENT]},
    "reviewers": {"users": ["alice", "bob"]},
    "rules": [
        {"name": "reads", "actions": ["db.query"], "tier": 1},
        {"name": "money", "actions": ["payments.*"], "tier": 4},
    ],
    "budgets": [{"name": "queries", "actions": ["db.*"], "max": 2, "per": "1h"}],
}


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def path(name: str) -> str:
    return resource_path(GROUP, VERSION, REQUESTS, NS, name)


class World:
    """One operator, wired as in production, over a fake API server and an in-memory Redis."""

    def __init__(
        self,
        *,
        retention: timedelta | None = None,
        outbox: MemoryOutbox | None = None,
        kube: FakeKube | None = None,
        redis: bool = True,
    ) -> None:
        self.clock = FixedClock(NOW)
        self.kube = kube or FakeKube()
        self.outbox = outbox or MemoryOutbox()
        if kube is None:
            self.kube.add(resource_path(GROUP, VERSION, POLICIES, NS, "payments"), {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentActionPolicy",
                "metadata": {"name": "payments", "namespace": NS, "generation": 1},
                "spec": SPEC,
            })  # fmt: skip
        self.policies = PolicyReconciler(self.kube, self.clock)  # type: ignore[arg-type]
        self.op: Operator = build(
            self.kube,  # type: ignore[arg-type]
            self.policies,
            self.clock,
            outbox=self.outbox if redis else None,
            retention=retention,
        )

    async def start(self) -> None:
        await self.policies.load_all()

    def file(self, name: str, action: str = "db.query") -> dict[str, Any]:
        return self.kube.add(path(name), {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ActionRequest",
            "metadata": {"name": name, "namespace": NS,
                         "creationTimestamp": format_time(self.clock())},
            "spec": {"agent": AGENT, "action": action, "target": "db:orders", "summary": "s"},
        })  # fmt: skip

    async def changed(self, name: str) -> dict[str, Any]:
        await self.op.requests.changed(await self.kube.get(path(name)))
        await settle()
        return await self.kube.get(path(name))

    async def restarted(self) -> "World":
        """A new operator process over the same cluster and the same Redis, at the same time."""
        again = World(kube=self.kube, outbox=self.outbox)
        again.clock.now = self.clock.now
        await again.start()
        return again

    async def decide(self, name: str, action: str = "db.query") -> str:
        """File a request, hand it to the operator; its phase then."""
        self.file(name, action)
        await self.changed(name)
        return str(self.status(name).get("phase"))

    def decided_once(self, name: str) -> None:
        """Approved at once: one Event, one audit line, whatever came in between."""
        assert self.status(name)["phase"] == "Approved"
        assert self.events(name) == ["AutoApproved"]
        assert self.audit(name) == ["Approved"]

    def uid(self, name: str) -> str:
        return str(self.kube.objects[path(name)]["metadata"]["uid"])

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.kube.objects[path(name)].get("status") or {})

    def events(self, name: str | None = None) -> list[str]:
        return [e["reason"] for e in self.kube.created("Event")
                if name is None or e["involvedObject"]["name"] == name]  # fmt: skip

    def audit(self, name: str | None = None) -> list[str]:
        return [f["event"] for f in self.outbox.streams.get(AUDIT_STREAM, [])
                if name is None or f["name"] == name]  # fmt: skip


async def started(*, filed: str = "", decided: str = "", **options: Any) -> World:
    """A started operator, with a request filed (and handled, when ``decided``)."""
    world = World(**options)
    await world.start()
    if filed or decided:
        world.file(filed or decided)
    if decided:
        await world.changed(decided)
    return world


async def settle() -> None:
    """Let the Events posted beside the work be posted."""
    for _ in range(5):
        await asyncio.sleep(0)


def asynchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# -- the plain path --------------------------------------------------------------------------


@asynchronous
async def test_a_tier1_request_is_decided_in_one_guarded_write_one_event_one_publication() -> None:
    world = await started(decided="req-1")
    assert world.status("req-1")["phase"] == "Approved"
    assert world.kube.count("PATCH", "/req-1/status") == 1
    assert world.events() == ["AutoApproved"]
    assert world.audit() == ["Approved"]
    assert len(world.outbox.streams[f"handoff:decisions:{NS}:{AGENT}"]) == 1


@asynchronous
async def test_the_echo_of_the_operators_own_write_is_not_handled_again() -> None:
    world = await started(filed="req-1")
    written = await world.changed("req-1")
    calls = len(world.kube.calls)
    await world.op.requests.changed(written)  # the watch delivers our own write
    await settle()
    assert len(world.kube.calls) == calls  # not even a read
    assert world.events() == ["AutoApproved"]


# -- conflicts -------------------------------------------------------------------------------


@asynchronous
async def test_a_conflicting_write_is_read_again_decided_again_and_written_once() -> None:
    world = await started(filed="req-1")
    world.kube.conflict("/req-1/status", times=3)
    await world.changed("req-1")
    assert world.kube.count("PATCH", "/req-1/status") == 4
    world.decided_once("req-1")


@asynchronous
async def test_conflicts_that_never_end_give_up_counted_with_nothing_announced() -> None:
    world = await started(filed="req-1")
    world.kube.conflict("/req-1/status", times=8)
    before = sample("handoff_reconcile_errors_total", kind="request")
    with pytest.raises(KubeError, match="kept changing; will retry"):
        await world.changed("req-1")
    assert sample("handoff_reconcile_errors_total", kind="request") == before + 1
    assert "phase" not in world.status("req-1")
    assert world.events() == []
    assert world.audit() == []
    # The kopf handler retries it through the scheduler; then it is decided once.
    await world.op.requests.on_timer((DEADLINE, NS, "req-1"))
    await settle()
    assert world.status("req-1")["phase"] == "Approved"
    assert world.events() == ["AutoApproved"]


@asynchronous
async def test_a_failed_write_raises_for_a_retry_and_the_retry_decides_once() -> None:
    world = await started(filed="req-1")
    world.kube.fail("PATCH", "/req-1/status", KubeError(503, "the server is unavailable"))
    with pytest.raises(KubeError, match="unavailable"):
        await world.changed("req-1")
    assert world.events() == []
    await world.changed("req-1")
    world.decided_once("req-1")


# -- publishing ------------------------------------------------------------------------------


@asynchronous
async def test_a_publication_that_fails_is_retried_later_and_then_published_once() -> None:
    world = await started(filed="req-1")
    world.outbox.down = True
    before = sample("handoff_publish_errors_total")
    written = await world.changed("req-1")
    assert world.status("req-1")["phase"] == "Approved"  # the status is the outbox
    assert sample("handoff_publish_errors_total") == before + 1
    assert world.op.scheduler.due((DEADLINE, NS, "req-1")) == NOW + timedelta(seconds=2)
    await world.op.requests.changed(written)  # the echo: not settled, so handled again
    assert sample("handoff_publish_errors_total") == before + 2
    world.outbox.down = False
    await world.op.requests.on_timer((DEADLINE, NS, "req-1"))
    await settle()
    assert world.audit() == ["Approved"]
    assert world.events() == ["AutoApproved"]  # the decision's Event, once
    assert world.kube.count("PATCH", "/req-1/status") == 1


@asynchronous
async def test_redis_that_lost_everything_gets_every_decision_again_once() -> None:
    world = await started(decided="req-1")
    await world.decide("req-2")
    world.outbox.lose_everything()
    await world.op.publisher.republish_all()
    await world.op.publisher.republish_all()  # twice: the marks that came back dedup it
    assert sorted(world.audit()) == ["Approved", "Approved"]


# -- budgets ---------------------------------------------------------------------------------


@asynchronous
async def test_a_budget_counts_auto_approvals_in_its_window_and_refills_after_it() -> None:
    world = await started()
    phases = []
    for name in ("req-1", "req-2", "req-3"):
        phases.append(await world.decide(name))
        world.clock.advance(minutes=10)
    assert phases == ["Approved", "Approved", "AwaitingApproval"]
    assert "decision" not in world.status("req-3")  # sent to review: BudgetExceeded
    world.clock.advance(minutes=30)  # req-1's approval is an hour old: out of the window
    assert await world.decide("req-4") == "Approved"
    # req-2 (50 minutes ago) and req-4 are in the window
    assert await world.decide("req-5") == "AwaitingApproval"


@asynchronous
async def test_a_restarted_operator_counts_the_budget_from_its_first_listing_in_any_order() -> None:
    world = await started()
    for name in ("req-1", "req-2"):
        await world.decide(name)
        world.clock.advance(minutes=20)
    restarted = await world.restarted()
    for name in ("req-2", "req-1"):  # the listing's order is the API server's
        await restarted.changed(name)
    assert await restarted.decide("req-3") == "AwaitingApproval"
    restarted.clock.advance(minutes=20)  # req-1 (an hour ago) left the window
    assert await restarted.decide("req-4") == "Approved"


# -- retention -------------------------------------------------------------------------------


@asynchronous
async def test_retention_counts_from_the_last_transition_and_waits_for_the_report() -> None:
    world = await started(decided="req-1", retention=timedelta(hours=1))
    retain = (RETAIN, NS, "req-1")
    assert world.op.scheduler.due(retain) == NOW + timedelta(hours=1)
    world.clock.advance(minutes=30)  # the agent reports its outcome half an hour later
    await world.op.outcomes.record(Reported(NS, AGENT, "req-1", world.uid("req-1"), "Executed", ""))
    await world.changed("req-1")  # the watch brings the outcome's write
    assert world.op.scheduler.due(retain) == NOW + timedelta(minutes=90)
    world.clock.advance(hours=1)
    await world.op.requests.on_timer(retain)  # the report does not show it yet: kept
    assert path("req-1") in world.kube.objects
    assert world.op.scheduler.due(retain) == world.clock() + REPORT_EVERY * 2
    await world.op.reports.write(NS, AGENT)
    await world.op.requests.on_timer(retain)
    assert path("req-1") not in world.kube.objects
    assert world.audit("req-1") == ["Approved", "Executed"]  # its record stays


@asynchronous
async def test_an_undecided_request_is_never_retired() -> None:
    world = World(retention=timedelta(seconds=1))
    await world.start()
    world.file("req-1", "payments.refund")
    await world.changed("req-1")
    assert world.status("req-1")["phase"] == "AwaitingApproval"
    assert world.op.scheduler.due((RETAIN, NS, "req-1")) is None


# -- the outcome path ------------------------------------------------------------------------


@asynchronous
async def test_an_agents_outcome_is_recorded_counted_said_and_published_once() -> None:
    world = await started(decided="req-1")
    uid = world.uid("req-1")
    reported = Reported(NS, AGENT, "req-1", uid, "Executed", "done")
    before = sample("handoff_executions_total", namespace=NS, outcome="Executed")
    await world.op.outcomes.record(reported)
    await world.op.outcomes.record(reported)  # the same entry, read again
    assert world.status("req-1")["phase"] == "Executed"
    assert sample("handoff_executions_total", namespace=NS, outcome="Executed") == before + 1
    assert world.events("req-1") == ["AutoApproved", "Executed"]
    assert world.audit("req-1") == ["Approved", "Executed"]


@asynchronous
async def test_an_outcome_whose_write_kept_conflicting_is_not_counted_nor_said() -> None:
    world = await started(decided="req-1")
    uid = world.uid("req-1")
    world.kube.conflict("/req-1/status", times=8)
    before = sample("handoff_executions_total", namespace=NS, outcome="Executed")
    with pytest.raises(KubeError, match="kept changing while its outcome was recorded"):
        await world.op.outcomes.record(Reported(NS, AGENT, "req-1", uid, "Executed", ""))
    assert sample("handoff_executions_total", namespace=NS, outcome="Executed") == before
    assert world.events("req-1") == ["AutoApproved"]
    assert world.audit("req-1") == ["Approved"]


# -- the JSON audit log ----------------------------------------------------------------------


AuditLines = Callable[[], list[dict[str, str]]]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> AuditLines:
    """The JSON audit log's lines so far."""
    caplog.set_level(logging.INFO, logger="handoff.audit")
    return lambda: [json.loads(r.getMessage()) for r in caplog.records if r.name == "handoff.audit"]


@asynchronous
async def test_each_audit_line_has_a_stable_id_and_a_restart_does_not_log_it_again(
    logged: AuditLines,
) -> None:
    world = await started(decided="req-1")
    uid = world.uid("req-1")
    assert [(line["event"], line["id"]) for line in logged()] == [
        ("Approved", f"{uid}/phase:Approved")
    ]
    restarted = await world.restarted()
    await restarted.changed("req-1")  # its first listing
    await restarted.op.publisher.republish_all()
    assert len(logged()) == 1


@asynchronous
async def test_a_line_published_but_not_logged_before_a_crash_is_logged_after_it(
    logged: AuditLines,
) -> None:
    world = await started(decided="req-1")
    uid = world.uid("req-1")  # the operator dies after the line is in Redis, before its mark:
    world.outbox.seen.discard((NS, uid, "logged:phase:Approved"))
    before = len(logged())
    restarted = await world.restarted()
    await restarted.changed("req-1")
    await restarted.changed("req-1")
    assert [line["id"] for line in logged()[before:]] == [f"{uid}/phase:Approved"]
    assert world.audit() == ["Approved"]  # and Redis has it once


@asynchronous
async def test_without_redis_each_line_is_logged_once_per_life_of_the_process(
    logged: AuditLines,
) -> None:
    world = World(redis=False)
    await world.start()
    world.file("req-1")
    written = await world.changed("req-1")
    await world.op.requests.on_timer((DEADLINE, NS, "req-1"))
    await world.op.publisher.publish(written)
    assert [line["event"] for line in logged()] == ["Approved"]

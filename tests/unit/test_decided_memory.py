"""What the operator keeps per request (issue #21): nothing for a decided request, so that a
history of 100,000 of them costs no memory, and one Redis round trip for each of them after a
start instead of two per record. The memory figures themselves are ``make bench``'s."""

import asyncio
from datetime import timedelta
from typing import Any

from handoff.controller.kopf_memories import event_only_memories
from handoff.controller.scheduler import DeadlineScheduler
from handoff.domain.records import Record
from handoff.testing import MemoryOutbox

from tests.unit.test_orchestration import NOW, World, asynchronous, path, started


class CountingOutbox(MemoryOutbox):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def publish(self, namespace: str, uid: str, record: Record) -> bool:
        self.calls.append("publish")
        return await super().publish(namespace, uid, record)

    async def marked(self, namespace: str, uid: str, key: str) -> bool:
        self.calls.append("marked")
        return await super().marked(namespace, uid, key)

    async def present(self, namespace: str, uid: str, keys: list[str]) -> set[str]:
        self.calls.append("present")
        return await super().present(namespace, uid, keys)


def kept(world: World, name: str) -> dict[str, Any]:
    """Every per-request entry the operator holds for ``name`` (a decided one should have none)."""
    op, uid, key = world.op, world.uid(name), ("agents", name)
    return {
        "settled": key in op.requests._settled,
        "published": uid in op.publisher._published,
        "reviews_seen": uid in op.requests.waiting._reviews_seen,
        "pending": key in op.requests.waiting._pending,
        "timers": len(op.scheduler),
    }


NOTHING = {"settled": False, "published": False, "reviews_seen": False, "pending": False,
           "timers": 0}  # fmt: skip


@asynchronous
async def test_a_decided_request_leaves_nothing_behind_once_its_echo_came() -> None:
    world = await started(decided="req-1")
    world.decided_once("req-1")
    assert kept(world, "req-1")["settled"]  # its own write's echo is still to come
    await world.changed("req-1")  # the echo
    assert kept(world, "req-1") == NOTHING
    assert world.kube.count("PATCH", "/req-1/status") == 1
    world.decided_once("req-1")


@asynchronous
async def test_a_request_that_waited_and_expired_leaves_nothing_behind() -> None:
    world = await started()
    assert await world.decide("pay-1", "payments.refund") == "AwaitingApproval"
    assert kept(world, "pay-1")["pending"]
    await world.changed("pay-1")  # the echo
    world.clock.now = NOW + timedelta(days=30)  # past any deadline
    await world.op.requests.on_timer(("deadline", "agents", "pay-1"))
    assert world.status("pay-1")["decision"]["reason"] == "Expired"
    await world.changed("pay-1")  # the echo
    assert kept(world, "pay-1") == NOTHING


@asynchronous
async def test_a_restart_asks_redis_once_for_a_decided_request_and_publishes_nothing_again() -> (
    None
):
    outbox = CountingOutbox()
    world = await started(decided="req-1", outbox=outbox)
    world.decided_once("req-1")
    again = await world.restarted()
    outbox.calls.clear()
    await again.changed("req-1")  # the first listing after the start
    assert outbox.calls == ["present"]
    again.decided_once("req-1")
    assert kept(again, "req-1") == NOTHING


@asynchronous
async def test_a_restart_publishes_what_redis_lost_of_a_decided_request() -> None:
    outbox = CountingOutbox()
    world = await started(decided="req-1", outbox=outbox)
    uid = world.uid("req-1")
    outbox.seen = {s for s in outbox.seen if s[1] != uid}  # Redis lost its marks
    outbox.streams.clear()
    again = await world.restarted()
    await again.changed("req-1")
    assert again.audit("req-1") == ["Approved"]


@asynchronous
async def test_without_redis_a_decided_request_is_logged_once_per_process() -> None:
    world = await started(decided="req-1", redis=False)
    uid = world.uid("req-1")
    assert uid in world.op.publisher._published  # nothing else can say it was logged
    body = world.kube.objects[path("req-1")]
    body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1000)
    published = dict(world.op.publisher._published)
    await world.changed("req-1")
    assert world.op.publisher._published == published


@asynchronous
async def test_budget_hits_and_their_requests_leave_with_the_window() -> None:
    world = await started(decided="req-1")
    budgets = world.op.requests.budgets
    assert budgets.usage("agents", "payments-agent")[("payments", "queries")] == 1
    again_same = world.kube.objects[path("req-1")]
    budgets.spend(again_same)  # seen again (a relist): spent once
    assert budgets.usage("agents", "payments-agent")[("payments", "queries")] == 1
    world.clock.now = NOW + timedelta(hours=1, seconds=1)
    assert budgets.usage("agents", "payments-agent")[("payments", "queries")] == 0
    assert not any(budgets._counted.values())
    budgets.spend(again_same)  # seen after its window: nothing to spend, nothing kept
    assert budgets.usage("agents", "payments-agent")[("payments", "queries")] == 0
    assert not any(budgets._counted.values())


def test_kopf_keeps_no_memory_per_object_and_hands_every_event_the_shared_memo() -> None:
    memories = event_only_memories()
    assert memories is not None, "kopf moved ResourceMemories: see controller/kopf_memories.py"
    memo = {"operator": object()}

    async def recall() -> Any:
        return await memories.recall({"metadata": {"uid": "u-1"}}, memobase=memo)

    first, second = asyncio.run(recall()), asyncio.run(recall())
    assert first.memo is memo
    assert second.memo is memo
    assert first is not second
    assert list(memories.iter_all_memories()) == []


def test_the_deadline_heap_drops_what_was_cancelled() -> None:
    async def fire(_key: object) -> None:
        return None

    scheduler = DeadlineScheduler(fire, lambda: NOW)
    for i in range(5000):
        scheduler.arm(("deadline", "ns", f"r{i}"), NOW + timedelta(days=1, seconds=i))
    for i in range(4990):
        scheduler.cancel(("deadline", "ns", f"r{i}"))
    assert len(scheduler) == 10
    assert len(scheduler._heap) <= 2 * 10 + 1024
    assert set(scheduler._due) <= {key for _, _, key in scheduler._heap}  # every live one stays

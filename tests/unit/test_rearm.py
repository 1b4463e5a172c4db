"""A start re-arms every waiting request's deadline from a listing before kopf's pass
(controller/rearm.py): the same time, key and pending gauge as the reconciler's pass, nothing for
decided requests or other shards, and never over what a pass has seen since."""

import asyncio
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.adapters import metrics
from handoff.adapters.kube import KubeError
from handoff.controller import rearm
from handoff.controller.policies import PolicyIndex
from handoff.controller.scheduler import DEADLINE, READ_AHEAD, DeadlineScheduler
from handoff.controller.waiting import READ_AHEAD_BY, Waiting

from tests.unit.test_orchestration import NS, World, asynchronous, path, started


class Pages:
    """The API server's listing of ``objects``, ``size`` a page, with continue tokens."""

    def __init__(self, objects: list[dict[str, Any]], size: int = 2) -> None:
        self.objects, self.size = objects, size
        self.paths: list[str] = []
        self.fail_at: int | None = None  # the page that fails

    async def get(self, path: str) -> Any:
        self.paths.append(path)
        if self.fail_at is not None and len(self.paths) > self.fail_at:
            raise KubeError(0, "cannot reach the API server: ClientConnectorError")
        query = urllib.parse.parse_qs(path.partition("?")[2])
        start = int(query.get("continue", ["0"])[0])
        end = start + self.size
        more = {"continue": str(end)} if end < len(self.objects) else {}
        return {"metadata": more, "items": self.objects[start:end]}


def pending_gauge(tier: str = "4") -> float:
    return metrics.REGISTRY.get_sample_value(
        "handoff_pending_requests", {"namespace": NS, "tier": tier}
    ) or 0.0  # fmt: skip


async def waiting_world(count: int) -> World:
    world = await started()
    for i in range(count):
        world.file(f"pay-{i}", "payments.refund")
        await world.changed(f"pay-{i}")
    world.file("read-1")  # decided at once: nothing to arm
    await world.changed("read-1")
    world.file("new-1")  # not classified yet: the pass classifies it
    return world


def deadlines(scheduler: DeadlineScheduler) -> int:
    """The deadline timers armed (each waiting request has a read-ahead timer too)."""
    return sum(1 for key in scheduler._due if isinstance(key, tuple) and key[0] == DEADLINE)


@asynchronous
async def test_the_listing_arms_what_the_reconcilers_pass_arms() -> None:
    world = await waiting_world(3)
    by_pass = {k: world.op.scheduler.due(k) for k in [(DEADLINE, NS, f"pay-{i}") for i in range(3)]}
    assert all(by_pass.values())
    gauge = pending_gauge()

    again = await world.restarted()
    assert len(again.op.scheduler) == 0
    objects = [
        await world.kube.get(path(n)) for n in ("pay-0", "read-1", "pay-1", "new-1", "pay-2")
    ]
    api = Pages(objects)
    armed = await rearm.rearm(api, again.op.requests.waiting, [NS], lambda _ns: True)  # type: ignore[arg-type]

    assert armed == 3
    assert {k: again.op.scheduler.due(k) for k in by_pass} == by_pass
    ahead = {
        (READ_AHEAD, ns, name): when - READ_AHEAD_BY for (_, ns, name), when in by_pass.items()
    }
    assert {k: again.op.scheduler.due(k) for k in ahead} == ahead  # each read a second before
    assert len(again.op.scheduler) == 6
    assert pending_gauge() == gauge + 3  # a second process's gauge, counted like the first's
    selector = "&fieldSelector=" + urllib.parse.quote(rearm.UNDECIDED)
    assert (
        api.paths[0]
        == f"/apis/handoff.dev/v1alpha1/namespaces/{NS}/actionrequests?limit={rearm.PAGE}{selector}"
    )
    assert [p.partition("continue=")[2] for p in api.paths[1:]] == [f"2{selector}", f"4{selector}"]

    # kopf's pass that follows arms the same deadlines again: nothing changes, nothing doubles.
    for name in ("pay-0", "pay-1", "pay-2"):
        await again.changed(name)
    assert {k: again.op.scheduler.due(k) for k in by_pass} == by_pass
    assert pending_gauge() == gauge + 3


@asynchronous
async def test_nothing_is_armed_for_other_shards_nor_over_what_a_pass_saw_meanwhile() -> None:
    world = await waiting_world(2)
    again = await world.restarted()
    objects = [await world.kube.get(path(n)) for n in ("pay-0", "pay-1")]
    waiting = again.op.requests.waiting

    class Racing(Pages):
        async def get(self, path: str) -> Any:
            page = await super().get(path)
            waiting.stop((NS, "pay-1"))  # decided by a pass while the page was on its way
            return page

    api = Racing(objects)
    assert await rearm.rearm(api, waiting, [NS], lambda _ns: True) == 1  # type: ignore[arg-type]
    assert again.op.scheduler.due((DEADLINE, NS, "pay-1")) is None
    assert again.op.scheduler.due((DEADLINE, NS, "pay-0")) is not None

    other = await world.restarted()
    elsewhere = await rearm.rearm(Pages(objects), other.op.requests.waiting, None,  # type: ignore[arg-type]
                                  lambda ns: ns != NS)  # fmt: skip
    assert elsewhere == 0
    assert len(other.op.scheduler) == 0


@asynchronous
async def test_a_failing_listing_leaves_the_rest_to_kopfs_pass() -> None:
    world = await waiting_world(3)
    again = await world.restarted()
    objects = [await world.kube.get(path(f"pay-{i}")) for i in range(3)]
    api = Pages(objects)
    api.fail_at = 1  # the second page
    assert await rearm.rearm(api, again.op.requests.waiting, [NS], lambda _ns: True) == 2  # type: ignore[arg-type]
    await again.changed("pay-2")  # kopf's pass
    assert deadlines(again.op.scheduler) == 3
    # and once the listing is over, a pass's wait is not remembered for it
    assert again.op.requests.waiting._touched is None


@asynchronous
async def test_a_deadline_that_passed_while_the_operator_was_down_is_decided_by_its_timer() -> None:
    world = await waiting_world(1)
    again = await world.restarted()
    again.clock.now = world.clock.now + timedelta(days=30)
    objects = [await world.kube.get(path("pay-0"))]
    assert await rearm.rearm(Pages(objects), again.op.requests.waiting, [NS], lambda _ns: True) == 1  # type: ignore[arg-type]
    await again.op.requests.on_timer((DEADLINE, NS, "pay-0"))  # what the scheduler fires
    assert again.status("pay-0")["decision"]["reason"] == "Expired"
    assert len(again.op.scheduler) == 0


def test_kopfs_globs_are_not_listed_by_name() -> None:
    assert rearm.plain(["agents", "team-a"])
    assert not rearm.plain(["team-*"])
    assert not rearm.plain(["!kube-system"])
    assert not rearm.plain([""])


@asynchronous
async def test_with_kopfs_globs_the_start_lists_nothing_and_kopfs_pass_arms() -> None:
    world = await waiting_world(1)
    again = await world.restarted()
    api = Pages([await world.kube.get(path("pay-0"))])
    await rearm.before_kopf(api, again.op.requests.waiting, ["team-*"], lambda _ns: True)  # type: ignore[arg-type]
    assert api.paths == []
    await rearm.before_kopf(api, again.op.requests.waiting, [], lambda _ns: True)  # type: ignore[arg-type]
    assert api.paths == [f"/apis/handoff.dev/v1alpha1/actionrequests?limit={rearm.PAGE}"
                         f"&fieldSelector={urllib.parse.quote(rearm.UNDECIDED)}"]  # fmt: skip
    assert deadlines(again.op.scheduler) == 1


def test_the_start_selects_every_phase_but_those_only_a_decision_gives() -> None:
    from handoff.domain.reasons import Phase  # noqa: PLC0415

    waiting = {Phase.PENDING, Phase.QUEUED, Phase.AWAITING_APPROVAL}
    assert set(rearm.DECIDED) == set(Phase) - waiting
    assert rearm.UNDECIDED.split(",") == [f"status.phase!={p}" for p in rearm.DECIDED]


@asynchronous
async def test_an_api_server_that_cannot_select_by_phase_gets_listed_whole() -> None:
    """A CRD without selectableFields (an older chart's): 400 for the selector, then the whole
    listing, as before."""
    world = await waiting_world(2)
    again = await world.restarted()
    objects = [await world.kube.get(path(n)) for n in ("pay-0", "read-1", "pay-1")]

    class NoSelector(Pages):
        async def get(self, path: str) -> Any:
            if "fieldSelector" in path:
                self.paths.append(path)
                raise KubeError(400, "field label not supported: status.phase")
            return await super().get(path)

    api = NoSelector(objects)
    armed = await rearm.rearm(api, again.op.requests.waiting, [NS], lambda _ns: True)  # type: ignore[arg-type]
    assert armed == 2
    assert "fieldSelector" in api.paths[0]
    assert all("fieldSelector" not in p for p in api.paths[1:])
    assert len(api.paths) == 3  # the refused one, then two pages of the whole listing


@asynchronous
async def test_a_new_leader_fires_the_earliest_deadlines_first_whatever_the_names() -> None:
    """Deadlines that passed while nobody led go out earliest first, not in the listing's (name)
    order, across pages: the start arms every one from the listing before the scheduler runs
    (lifecycle.startup starts it after ``before_kopf``), and the scheduler pops its heap."""
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    fired: list[str] = []

    async def fire(key: Any) -> None:
        fired.append(key[2])

    scheduler = DeadlineScheduler(fire, lambda: now)
    waiting = Waiting(PolicyIndex(), scheduler, None, lambda: now)
    # Names in the reverse order of their deadlines: a name-ordered pass would fire "a-*" first.
    minutes = {"a-late": 1, "b-later": 2, "c-middle": 30, "d-early": 50, "e-earliest": 59}
    objects = [
        {"metadata": {"namespace": NS, "name": name},
         "status": {"policy": "payments", "tier": 4,
                    "deadline": (now - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")}}
        for name, m in minutes.items()
    ]  # fmt: skip
    api = Pages(objects, size=2)  # three pages, in name order as the API server lists them
    assert await rearm.rearm(api, waiting, [NS], lambda _ns: True) == 5  # type: ignore[arg-type]
    assert len(api.paths) == 3
    task = asyncio.create_task(scheduler.run())
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    assert fired == ["e-earliest", "d-early", "c-middle", "b-later", "a-late"]

"""A wave of deadlines falling together: each request is read and decided in one of the
reconciler's slots, so the first to fall is written before the wave's later ones are read (a
read in one turn of the slots and the pass in a second put every write behind every read); and
what is decided is unchanged: Expired, once, with one Event, one audit line, the gauge emptied.
A request read a second ahead of its deadline is decided without a read, as it would be with
one; the wave's Events wait for a lull in its decisions."""

import asyncio
from datetime import timedelta
from typing import Any

from handoff.controller.concurrency import Lull
from handoff.controller.readahead import READ_AHEAD_LIMIT
from handoff.controller.requests import CONCURRENCY
from handoff.controller.scheduler import DEADLINE, READ_AHEAD
from handoff.domain.timefmt import parse_time
from handoff.testing import FakeKube

from tests.unit.helpers import deny
from tests.unit.test_orchestration import NS, World, asynchronous, path, settle, started

WAVE = 2 * CONCURRENCY + 8


class SlowKube(FakeKube):
    """Each call lets the other tasks run, as a real round trip does."""

    async def get(self, path: str) -> Any:
        await asyncio.sleep(0)
        return await super().get(path)

    async def merge_patch(self, path: str, body: Any, params: Any = None) -> Any:
        await asyncio.sleep(0)
        return await super().merge_patch(path, body, params)


def slowed(world: World, *, events: bool = False) -> SlowKube:
    """The operator's reads and writes (and its Events, with ``events``) through a SlowKube over
    the same objects, which records them."""
    slow = SlowKube()
    slow.objects = world.kube.objects
    world.op.requests.status.api = slow  # type: ignore[assignment]
    if events:
        world.op.requests.events.api = slow  # type: ignore[assignment]
    return slow


async def wave() -> tuple[World, list[str]]:
    world = await started()
    names = [f"pay-{i}" for i in range(WAVE)]
    for name in names:
        world.file(name, "payments.refund")
        await world.changed(name)
    world.clock.now = max(parse_time(world.status(n)["deadline"]) for n in names)
    return world, names


@asynchronous
async def test_a_wave_of_deadlines_is_written_in_the_order_it_fell() -> None:
    world, names = await wave()
    slow = slowed(world)
    await asyncio.gather(*(world.op.requests.on_timer((DEADLINE, NS, n)) for n in names))

    calls = [(m, p.removesuffix("/status")) for m, p in slow.calls if "actionrequests" in p]
    first_write = calls.index(("PATCH", path(names[0])))
    last_read = calls.index(("GET", path(names[-1])))
    assert first_write < last_read  # before: every GET of the wave came before its first PATCH
    assert [m for m, _ in calls].count("GET") == WAVE  # one read each, no more


@asynchronous
async def test_a_wave_of_deadlines_decides_each_request_expired_once() -> None:
    world, names = await wave()
    await asyncio.gather(*(world.op.requests.on_timer((DEADLINE, NS, n)) for n in names))
    await asyncio.gather(*(world.op.requests.on_timer((DEADLINE, NS, n)) for n in names[:3]))
    for name in names:
        decision = world.status(name)["decision"]
        assert (decision["outcome"], decision["reason"]) == ("Denied", "Expired")
        assert world.events(name) == ["AwaitingReview", "Expired"]
        assert world.audit(name)[-1] == "Denied"
        assert world.audit(name).count("Denied") == 1
    assert len(world.op.scheduler) == 0


@asynchronous
async def test_a_deadline_of_a_request_deleted_meanwhile_forgets_it() -> None:
    world, names = await wave()
    del world.kube.objects[path(names[0])]
    await world.op.requests.on_timer((DEADLINE, NS, names[0]))
    assert world.op.scheduler.due((DEADLINE, NS, names[0])) is None


# -- reading ahead: a waiting request is read a second before its deadline -------------------


@asynchronous
async def test_a_request_read_ahead_is_decided_at_its_deadline_without_a_read() -> None:
    world, names = await wave()
    deadline = world.clock.now
    for name in names:
        assert world.op.scheduler.due((READ_AHEAD, NS, name)) == parse_time(
            world.status(name)["deadline"]
        ) - timedelta(seconds=1)
    world.clock.now = deadline - timedelta(seconds=1)
    await asyncio.gather(*(world.op.requests.on_timer((READ_AHEAD, NS, n)) for n in names))

    world.clock.now = deadline
    slow = slowed(world)
    await asyncio.gather(*(world.op.requests.on_timer((DEADLINE, NS, n)) for n in names))
    await settle()

    calls = [m for m, p in slow.calls if "actionrequests" in p]
    assert calls == ["PATCH"] * WAVE  # the wave's writes, and no read among them
    for name in names:  # decided as without reading ahead
        decision = world.status(name)["decision"]
        assert (decision["outcome"], decision["reason"]) == ("Denied", "Expired")
        assert world.events(name) == ["AwaitingReview", "Expired"]
        assert world.audit(name).count("Denied") == 1
    assert len(world.op.scheduler) == 0
    assert list(world.op.requests.ahead) == []


@asynchronous
async def test_a_review_after_the_read_ahead_is_what_the_deadline_decides() -> None:
    world, names = await wave()
    name = names[0]
    await world.op.requests.on_timer((READ_AHEAD, NS, name))
    # alice denies; the watch has not brought her review to the operator yet
    await world.kube.merge_patch(path(name) + "/status", {"status": {"reviews": [deny("alice")]}})

    await world.op.requests.on_timer((DEADLINE, NS, name))
    await settle()
    decision = world.status(name)["decision"]
    assert (decision["outcome"], decision["by"]) == ("Denied", ["alice"])  # not Expired
    assert decision["reason"] != "Expired"
    assert world.audit(name).count("Denied") == 1


@asynchronous
async def test_a_newer_version_by_the_watch_drops_what_was_read_ahead() -> None:
    world, names = await wave()
    await world.op.requests.on_timer((READ_AHEAD, NS, names[0]))
    assert list(world.op.requests.ahead) == [(NS, names[0])]
    await world.changed(names[0])
    assert list(world.op.requests.ahead) == []


@asynchronous
async def test_nothing_is_read_ahead_for_a_request_no_longer_waiting_or_gone() -> None:
    world, names = await wave()
    await world.op.requests.on_timer((DEADLINE, NS, names[0]))  # decided: Expired
    await world.op.requests.on_timer((READ_AHEAD, NS, names[0]))
    del world.kube.objects[path(names[1])]
    await world.op.requests.on_timer((READ_AHEAD, NS, names[1]))
    assert list(world.op.requests.ahead) == []


@asynchronous
async def test_a_deadline_within_the_second_arms_no_read_ahead() -> None:
    world = await started()
    world.file("pay-0", "payments.refund")
    await world.changed("pay-0")
    until = parse_time(world.status("pay-0")["deadline"])
    world.op.requests.waiting.wait((NS, "pay-0"), world.clock.now + timedelta(seconds=0.5), "4")
    assert world.op.scheduler.due((READ_AHEAD, NS, "pay-0")) is None  # the old one is cancelled
    assert world.op.scheduler.due((DEADLINE, NS, "pay-0")) != until


# -- Events wait for a lull in the decisions --------------------------------------------------


@asynchronous
async def test_a_waves_events_are_posted_after_all_its_decisions_are_written() -> None:
    world, names = await wave()
    slow = slowed(world, events=True)
    await asyncio.gather(*(world.op.requests.on_timer((DEADLINE, NS, n)) for n in names))
    for _ in range(20):
        await settle()
    calls = [m for m, p in slow.calls if "actionrequests" in p or p.endswith("/events")]
    assert calls.count("POST") == WAVE  # one Expired Event each
    assert calls.index("POST") > max(i for i, m in enumerate(calls) if m == "PATCH")


@asynchronous
async def test_a_stream_of_new_requests_posts_its_events_as_it_goes() -> None:
    """Only deadlines hold Events back: held Events of a steady stream would go out in bursts."""
    world = await started()
    slow = slowed(world, events=True)
    names = [f"req-{i}" for i in range(WAVE)]
    for name in names:
        world.file(name)  # tier 1
    bodies = [await world.kube.get(path(n)) for n in names]
    await asyncio.gather(*(world.op.requests.changed(body) for body in bodies))
    for _ in range(20):
        await settle()
    calls = [m for m, p in slow.calls if "actionrequests" in p or p.endswith("/events")]
    assert calls.count("POST") == WAVE
    assert calls.index("POST") < max(i for i, m in enumerate(calls) if m == "PATCH")


@asynchronous
async def test_events_wait_while_a_deadline_is_being_decided() -> None:
    world = await started()
    lull = world.op.requests.lull
    lull.begin()  # a deadline being decided
    world.file("req-1")
    task = asyncio.ensure_future(world.op.requests._pass((NS, "req-1"), None))
    await asyncio.wait_for(task, 5)
    await settle()
    assert world.status("req-1")["phase"] == "Approved"  # written at once
    assert world.events("req-1") == []  # its Event waits
    lull.end()
    await settle()
    assert world.events("req-1") == ["AutoApproved"]


@asynchronous
async def test_an_event_waits_for_a_lull_for_its_patience_at_most() -> None:
    lull = Lull(patience=0.05)
    lull.begin()
    started_at = asyncio.get_running_loop().time()
    await lull.wait()
    assert 0.04 <= asyncio.get_running_loop().time() - started_at < 1.0
    lull.end()
    started_at = asyncio.get_running_loop().time()
    await lull.wait()
    assert asyncio.get_running_loop().time() - started_at < 0.04


@asynchronous
async def test_past_its_limit_a_deadline_reads_its_request_when_it_falls() -> None:
    world, names = await wave()
    requests = world.op.requests
    for i in range(READ_AHEAD_LIMIT):  # a flood's worth, held already
        requests.ahead.keep((NS, f"other-{i}"), {})  # type: ignore[arg-type]
    await requests.on_timer((READ_AHEAD, NS, names[0]))
    assert (NS, names[0]) not in requests.ahead
    assert len(requests.ahead) == READ_AHEAD_LIMIT
    await requests.on_timer((DEADLINE, NS, names[0]))  # read now, decided as ever
    assert world.status(names[0])["decision"]["reason"] == "Expired"

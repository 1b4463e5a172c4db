"""A wave of deadlines falling together: each request is read and decided in one of the
reconciler's slots, so the first to fall is written before the wave's later ones are read (a
read in one turn of the slots and the pass in a second put every write behind every read); and
what is decided is unchanged: Expired, once, with one Event, one audit line, the gauge emptied."""

import asyncio
from typing import Any

from handoff.controller.requests import CONCURRENCY
from handoff.controller.scheduler import DEADLINE
from handoff.domain.timefmt import parse_time
from handoff.testing import FakeKube

from tests.unit.test_orchestration import NS, World, asynchronous, path, started

WAVE = 2 * CONCURRENCY + 8


class SlowKube(FakeKube):
    """Each call lets the other tasks run, as a real round trip does."""

    async def get(self, path: str) -> Any:
        await asyncio.sleep(0)
        return await super().get(path)

    async def merge_patch(self, path: str, body: Any, params: Any = None) -> Any:
        await asyncio.sleep(0)
        return await super().merge_patch(path, body, params)


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
    slow = SlowKube()
    slow.objects = world.kube.objects
    world.op.requests.status.api = slow  # type: ignore[assignment]
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

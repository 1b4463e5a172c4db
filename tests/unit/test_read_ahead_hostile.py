"""A hostile agent against the read ahead of deadlines (Requests.read_ahead): what is kept for a
deadline is never older than what the watch brought, nor bigger than the operator can hold for a
flood of requests whose deadlines fall in the same second; and what decides is still the request
as it is when its deadline falls."""

import asyncio
import json
from datetime import timedelta
from typing import Any

from handoff.controller.readahead import READ_AHEAD_BYTES
from handoff.controller.scheduler import DEADLINE, READ_AHEAD
from handoff.domain.timefmt import parse_time
from handoff.testing import FakeKube

from tests.unit.helpers import deny
from tests.unit.test_expiry_wave import slowed, wave
from tests.unit.test_orchestration import NS, World, asynchronous, path, settle, started


class GatedKube(FakeKube):
    """A GET of a request answers with the object as it was when the GET arrived, and the answer
    reaches the operator only when ``release`` is set: a round trip that is overtaken by the
    watch."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def get(self, path: str) -> Any:
        body = await super().get(path)
        if "actionrequests" in path and not self.release.is_set():
            self.entered.set()
            await self.release.wait()
        return body


def gated(world: World) -> GatedKube:
    gate = GatedKube()
    gate.objects = world.kube.objects
    world.op.requests.status.api = gate  # type: ignore[assignment]
    return gate


async def overtaken(world: World, name: str, meanwhile: Any) -> GatedKube:
    """Read ``name`` ahead; while the read's answer is on its way, ``meanwhile()`` runs."""
    gate = gated(world)
    reading = asyncio.ensure_future(world.op.requests.on_timer((READ_AHEAD, NS, name)))
    await asyncio.wait_for(gate.entered.wait(), 5)
    await meanwhile()
    gate.release.set()
    await asyncio.wait_for(reading, 5)
    return gate


@asynchronous
async def test_a_read_ahead_overtaken_by_the_watch_keeps_nothing_older() -> None:
    world, names = await wave()
    name = names[0]
    world.clock.now -= timedelta(seconds=1)

    async def labelled() -> None:  # the agent labels its own request: a newer version
        await world.kube.merge_patch(path(name), {"metadata": {"labels": {"x": "1"}}})
        await world.changed(name)

    await overtaken(world, name, labelled)
    kept = world.op.requests.ahead.get((NS, name))
    current = world.kube.objects[path(name)]["metadata"]["resourceVersion"]
    assert kept is None or kept["metadata"]["resourceVersion"] == current


@asynchronous
async def test_a_request_recreated_under_a_read_ahead_is_not_decided_as_the_old_one() -> None:
    world, names = await wave()
    name = names[0]
    old_uid = world.uid(name)
    world.clock.now -= timedelta(seconds=1)

    async def recreated() -> None:  # deleted and filed again with the same name
        del world.kube.objects[path(name)]
        await world.op.requests.deleted(NS, name, old_uid)
        world.file(name, "payments.refund")
        await world.changed(name)

    await overtaken(world, name, recreated)
    kept = world.op.requests.ahead.get((NS, name))
    assert kept is None or kept["metadata"]["uid"] == world.uid(name)


@asynchronous
async def test_a_denial_that_overtakes_a_read_ahead_decides() -> None:
    world, names = await wave()
    name = names[0]
    deadline = world.clock.now
    world.clock.now -= timedelta(milliseconds=500)

    async def denied() -> None:  # alice denies half a second before the deadline
        await world.kube.merge_patch(
            path(name) + "/status", {"status": {"reviews": [deny("alice")]}}
        )

    await overtaken(world, name, denied)  # the watch has not brought her review yet
    world.clock.now = deadline
    await world.op.requests.on_timer((DEADLINE, NS, name))
    await world.changed(name)  # and now it has
    await settle()
    decision = world.status(name)["decision"]
    assert (decision["outcome"], decision["by"]) == ("Denied", ["alice"])
    assert decision["reason"] != "Expired"
    assert world.audit(name).count("Denied") == 1
    assert world.events(name).count("Expired") == 0


def hostile(world: World, name: str) -> None:
    """A request as large as the agent may make it: 64 KiB of parameters (the admission policy's
    bound) and 200 KiB of its own annotations (the API server's bound is 256 KiB in all)."""
    world.file(name, "payments.refund")
    body = world.kube.objects[path(name)]
    body["spec"]["parameters"] = {f"p{i}": "x" * 1000 for i in range(64)}
    body["metadata"]["annotations"] = {f"example.com/a{i}": "y" * 4000 for i in range(50)}


@asynchronous
async def test_a_flood_of_large_requests_read_ahead_keeps_a_bounded_size() -> None:
    world = await started()
    names = [f"big-{i}" for i in range(60)]  # 60 x 270 KB: 16 MB, were all of them kept
    for name in names:
        hostile(world, name)
        await world.changed(name)
    deadline = max(parse_time(world.status(n)["deadline"]) for n in names)
    world.clock.now = deadline - timedelta(seconds=1)
    await asyncio.gather(*(world.op.requests.on_timer((READ_AHEAD, NS, n)) for n in names))

    ahead = world.op.requests.ahead
    assert len(ahead)  # some are read ahead still
    sizes = [len(json.dumps(ahead.get(key), separators=(",", ":"))) for key in ahead]
    assert sum(sizes) == ahead.bytes <= READ_AHEAD_BYTES

    world.clock.now = deadline  # every one decided all the same: once, Expired, one Event each
    await asyncio.gather(*(world.op.requests.on_timer((DEADLINE, NS, n)) for n in names))
    for _ in range(10):
        await settle()
    for name in names:
        assert world.status(name)["decision"]["reason"] == "Expired"
        assert world.events(name) == ["AwaitingReview", "Expired"]
        assert world.audit(name).count("Denied") == 1
    assert list(world.op.requests.ahead) == []
    assert world.op.requests.ahead.bytes == 0


@asynchronous
async def test_a_deadline_stuck_in_its_pass_holds_the_events_for_the_lulls_patience_only() -> None:
    """A deadline whose pass never ends (an API server that stopped answering it) keeps the lull
    busy: every other request's Event still goes out, after the lull's patience."""
    world = await started()
    world.op.requests.lull.patience = 0.05
    world.op.requests.lull.begin()  # and never ends
    world.file("req-1")
    await world.changed("req-1")
    assert world.status("req-1")["phase"] == "Approved"
    await asyncio.sleep(0.2)
    await settle()
    assert world.events("req-1") == ["AutoApproved"]


@asynchronous
async def test_past_the_byte_bound_a_read_ahead_reads_nothing() -> None:
    """Once what is read ahead is at its bound, the next deadlines of the flood do not read their
    request twice (once ahead, to be dropped, and once when it falls)."""
    world, names = await wave()
    world.op.requests.ahead.bytes = READ_AHEAD_BYTES
    world.clock.now -= timedelta(seconds=1)
    slow = slowed(world)
    await world.op.requests.on_timer((READ_AHEAD, NS, names[0]))
    assert [m for m, p in slow.calls if "actionrequests" in p] == []
    assert list(world.op.requests.ahead) == []

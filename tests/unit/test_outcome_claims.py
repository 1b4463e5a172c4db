"""When leadership moves, what the former leader's consumer was given and never acknowledged is
claimed by the new leader (XAUTOCLAIM) once it has been idle long enough, and recorded exactly
once; on a real Redis."""

import asyncio
import itertools
import time

import redis.asyncio as redis_asyncio
from handoff.adapters.outbox import RedisOutcomes
from handoff.controller.outcomes import OutcomeReader, Reported
from handoff.devenv.redis import RedisServer

UID = "0b7a3f0e-9c1d-4d55-8a42-2f0cbd4a9e11"
IDLE = 0.3  # seconds an entry must sit unacknowledged before another consumer claims it
_streams = itertools.count()


def entry(name: str) -> dict[str, str]:
    return {"name": name, "uid": UID, "outcome": "Executed", "message": "done"}


async def _abandoned_then_claimed(url: str) -> None:
    stream = f"handoff:outcomes:claims{next(_streams)}:payments-agent"
    admin = redis_asyncio.from_url(url)
    recorded: list[Reported] = []

    async def record(reported: Reported) -> None:
        recorded.append(reported)

    async def notice(*_: str) -> None:
        raise AssertionError("nothing here is rejected")

    old = RedisOutcomes(url, "operator-old")
    new = RedisOutcomes(url, "operator-new")
    clock = [0.0]
    leader = OutcomeReader(
        new, lambda: [stream], record, notice, monotonic=lambda: clock[0], claim_idle=IDLE
    )
    try:
        await old.read([stream], block_ms=10)  # makes the group
        await admin.xadd(stream, entry("req-1"))  # type: ignore[arg-type]
        await admin.xadd(stream, entry("req-2"))  # type: ignore[arg-type]
        # The old leader is handed both and dies before acknowledging either (mid-entry).
        given = await old.read([stream], block_ms=10)
        assert [fields[b"name"] for _, _, fields in given] == [b"req-1", b"req-2"]
        await old.close()

        await leader.step()  # too fresh: still the old consumer's, nothing recorded yet
        assert recorded == []
        pending = await admin.xpending(stream, "operator")
        assert pending["pending"] == 2
        assert {c["name"] for c in pending["consumers"]} == {b"operator-old"}

        deadline = time.monotonic() + 10
        while not recorded and time.monotonic() < deadline:
            await asyncio.sleep(IDLE)
            clock[0] += 60  # the next claim is due
            await leader.step()
        assert [r.name for r in recorded] == ["req-1", "req-2"]
        assert (await admin.xpending(stream, "operator"))["pending"] == 0
        assert await admin.xlen(stream) == 0  # acknowledged and deleted

        # Later claims and reads find nothing more: each was recorded exactly once.
        for _ in range(3):
            await asyncio.sleep(IDLE)
            clock[0] += 60
            await leader.step()
        revived = RedisOutcomes(url, "operator-old")  # the old leader back, reading its backlog
        assert await revived.read([stream], block_ms=10) == []
        await revived.close()
        assert [r.name for r in recorded] == ["req-1", "req-2"]
    finally:
        await new.close()
        await admin.aclose()


def test_the_new_leader_claims_and_records_what_the_old_one_abandoned_once(
    redis_server: RedisServer,
) -> None:
    asyncio.run(_abandoned_then_claimed(redis_server.url))


async def _own_entries_are_not_claimed_twice(url: str) -> None:
    """An entry this reader reads and that is also old enough to claim is handled once."""
    stream = f"handoff:outcomes:claims{next(_streams)}:payments-agent"
    admin = redis_asyncio.from_url(url)
    recorded: list[str] = []

    async def record(reported: Reported) -> None:
        recorded.append(reported.name)

    async def notice(*_: str) -> None:
        raise AssertionError("nothing here is rejected")

    mine = RedisOutcomes(url, "operator-a")
    reader = OutcomeReader(mine, lambda: [stream], record, notice, claim_idle=0)
    try:
        await mine.read([stream], block_ms=10)
        await admin.xadd(stream, entry("req-3"))  # type: ignore[arg-type]
        await reader.step()
        assert recorded == ["req-3"]
    finally:
        await mine.close()
        await admin.aclose()


def test_an_entry_read_and_claimed_in_one_step_is_recorded_once(
    redis_server: RedisServer,
) -> None:
    asyncio.run(_own_entries_are_not_claimed_twice(redis_server.url))

"""A start's many reads of what is published (one HMGET per stored request) go out together:
each asker still gets the answer of its own hash, an error reaches every asker of its batch
(each publisher then retries, as before), a cancelled asker is skipped, and a lone read is sent
at once."""

import asyncio
from typing import Any

import pytest
from handoff.adapters.coalesce import CoalescedReads
from handoff.adapters.outbox import OutboxError, RedisOutbox

from tests.unit.test_orchestration import asynchronous


class FakeRedis:
    """Hashes in a dict; each pipeline is one round trip, answered after a turn of the loop."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes = hashes
        self.pipelines: list[list[tuple[str, list[str]]]] = []
        self.fail: Exception | None = None

    def pipeline(self, transaction: bool = True) -> "FakePipeline":
        assert not transaction  # each HMGET is answered on its own
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.commands: list[tuple[str, list[str]]] = []

    async def __aenter__(self) -> "FakePipeline":
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def hmget(self, key: str, fields: list[str]) -> None:
        self.commands.append((key, fields))

    async def execute(self) -> list[list[Any]]:
        self.redis.pipelines.append(self.commands)
        await asyncio.sleep(0.01)  # the round trip: whatever is asked meanwhile waits for it
        if self.redis.fail is not None:
            raise self.redis.fail
        return [[self.redis.hashes.get(key, {}).get(f) for f in fields]
                for key, fields in self.commands]  # fmt: skip


@asynchronous
async def test_reads_asked_together_go_out_in_one_round_trip_each_with_its_own_answer() -> None:
    redis = FakeRedis({f"h{i}": {"decision": "1", f"only{i}": "x"} for i in range(100)})
    reads = CoalescedReads(redis)
    answers = await asyncio.gather(
        *(reads.hmget(f"h{i}", ["decision", f"only{i}", "missing"]) for i in range(100)),
        reads.hmget("absent", ["decision"]),
    )
    assert answers == [["1", "x", None] for _ in range(100)] + [[None]]
    assert len(redis.pipelines) == 1
    assert reads.round_trips == 1


@asynchronous
async def test_reads_asked_while_one_is_on_its_way_wait_and_go_out_together() -> None:
    redis = FakeRedis({f"h{i}": {"decision": "1"} for i in range(10)})
    reads = CoalescedReads(redis)
    first = asyncio.create_task(reads.hmget("h0", ["decision"]))
    await asyncio.sleep(0.001)  # the first is on its way
    assert len(redis.pipelines) == 1
    later = [asyncio.create_task(reads.hmget(f"h{i}", ["decision"])) for i in range(1, 10)]
    assert await first == ["1"]
    assert [await t for t in later] == [["1"]] * 9
    assert [len(p) for p in redis.pipelines] == [1, 9]


@asynchronous
async def test_a_lone_read_is_sent_at_once() -> None:
    redis = FakeRedis({"h": {"decision": "1"}})
    reads = CoalescedReads(redis)
    assert await asyncio.wait_for(reads.hmget("h", ["decision"]), 1) == ["1"]
    assert await asyncio.wait_for(reads.hmget("h", ["other"]), 1) == [None]
    assert [len(p) for p in redis.pipelines] == [1, 1]


@asynchronous
async def test_an_error_reaches_every_asker_of_its_batch_and_the_next_batch_is_fine() -> None:
    redis = FakeRedis({"h": {"decision": "1"}})
    reads = CoalescedReads(redis)
    redis.fail = ConnectionError("Redis went away")
    results = await asyncio.gather(
        *(reads.hmget("h", ["decision"]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    redis.fail = None
    assert await reads.hmget("h", ["decision"]) == ["1"]


@asynchronous
async def test_a_cancelled_asker_is_skipped_and_the_others_are_answered() -> None:
    redis = FakeRedis({"a": {"k": "1"}, "b": {"k": "2"}})
    reads = CoalescedReads(redis)
    first = asyncio.create_task(reads.hmget("a", ["k"]))
    await asyncio.sleep(0.001)
    gone = asyncio.create_task(reads.hmget("a", ["k"]))
    kept = asyncio.create_task(reads.hmget("b", ["k"]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == ["1"]
    assert await kept == ["2"]
    assert [len(p) for p in redis.pipelines] == [1, 1]  # the cancelled one was not sent


@asynchronous
async def test_closing_cancels_whoever_still_waits() -> None:
    redis = FakeRedis({"a": {"k": "1"}})
    reads = CoalescedReads(redis)
    waiting = asyncio.create_task(reads.hmget("a", ["k"]))
    await asyncio.sleep(0.001)
    await reads.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@asynchronous
async def test_the_outbox_turns_a_batch_error_into_its_own() -> None:
    outbox = RedisOutbox("redis://127.0.0.1:1")  # nothing listens there
    try:
        with pytest.raises(OutboxError, match="Redis: ConnectionError"):
            await outbox.present("ns", "uid", ["decision"])
    finally:
        await outbox.close()

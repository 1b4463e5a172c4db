"""The operator's Redis outbox against a real Redis: a request's records go out in one script call,
one round trip, each still exactly once and in order, and a mark is set with its expiry at once."""

import asyncio
import uuid

import pytest
from handoff.adapters.outbox import DEDUP_TTL, RedisOutbox, dedup_key
from handoff.devenv.redis import RedisServer
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.records import Record
from handoff.testing.cluster import redis_client

pytestmark = pytest.mark.integration


def test_records_go_out_together_each_once_and_in_order(redis_server: RedisServer) -> None:
    ns, uid = "pipeline", str(uuid.uuid4())
    agent = f"handoff:decisions:{ns}:{uid}"
    records = [
        Record(agent, "decision", {"name": "r", "event": "Approved"}),
        Record(AUDIT_STREAM, "phase:Approved", {"name": "r", "uid": uid, "event": "Approved"}),
    ]

    async def publish(batch: list[Record]) -> list[bool]:
        outbox = RedisOutbox(redis_server.url)
        try:
            return await outbox.publish_all(ns, uid, batch)
        finally:
            await outbox.close()

    redis = redis_client(redis_server.url)
    redis.script_flush()  # the script is loaded again when Redis does not have it
    assert asyncio.run(publish(records)) == [True, True]
    assert asyncio.run(publish(records)) == [False, False]  # a retry appends nothing
    third = Record(agent, "review:0", {"name": "r", "event": "Reviewed"})
    assert asyncio.run(publish([records[0], third])) == [False, True]
    assert [e[1][b"event"] for e in redis.xrange(agent)] == [b"Approved", b"Reviewed"]
    audit = [e[1] for e in redis.xrange(AUDIT_STREAM) if e[1].get(b"uid") == uid.encode()]
    assert len(audit) == 1
    assert 0 < redis.ttl(dedup_key(ns, uid)) <= DEDUP_TTL


def test_a_mark_and_its_expiry_are_set_together(redis_server: RedisServer) -> None:
    ns, uid = "pipeline", str(uuid.uuid4())

    async def mark() -> bool:
        outbox = RedisOutbox(redis_server.url)
        try:
            await outbox.mark(ns, uid, "logged:phase:Approved")
            return await outbox.marked(ns, uid, "logged:phase:Approved")
        finally:
            await outbox.close()

    assert asyncio.run(mark())
    redis = redis_client(redis_server.url)
    assert 0 < redis.ttl(dedup_key(ns, uid)) <= DEDUP_TTL


def test_what_is_out_of_many_requests_is_asked_in_a_few_round_trips(
    redis_server: RedisServer,
) -> None:
    """A start asks, for every stored request, what of its record is out: against a real
    Redis, each request gets its own answer, and the asks made together go out together."""
    ns = "pipeline"
    uids = [str(uuid.uuid4()) for _ in range(300)]
    published = set(uids[::3])

    async def scenario() -> tuple[list[set[str]], int]:
        outbox = RedisOutbox(redis_server.url)
        try:
            for uid in published:
                await outbox.mark(ns, uid, "decision")
            answers = await asyncio.gather(
                *(outbox.present(ns, uid, ["decision", "logged:decision"]) for uid in uids)
            )
            return list(answers), outbox._reads.round_trips
        finally:
            await outbox.close()

    answers, round_trips = asyncio.run(scenario())
    assert answers == [{"decision"} if uid in published else set() for uid in uids]
    assert round_trips <= 2  # the first ask alone, then everything asked meanwhile

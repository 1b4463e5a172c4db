"""A hostile agent (and a curious user) at Handoff's surfaces: Redis, the console's sign-in, the
terminal. Each test reproduces an attack of issue 14 (items 9 to 11) first, then the variants a
careful attacker would try next."""

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from handoff.adapters.outbox import OutboxError, RedisOutbox, dedup_key
from handoff.adapters.redis_acl import RedisAdmin
from handoff.devenv.environment import console_reader
from handoff.devenv.redis import RedisServer
from handoff.domain.records import Record
from handoff.testing.cluster import redis_client

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def agent_user(server: RedisServer, namespace: str, agent: str = "payments-agent") -> str:
    """The agent's own Redis URL, made as the operator makes it."""
    admin = RedisAdmin(server.url)
    password = secrets.token_urlsafe(24)
    user, _ = asyncio.run(admin.ensure_agent(namespace, agent, password))
    return admin.url_for(user, password)


def setex(client: "redis.Redis", key: str, seconds: int, value: bytes) -> bool:
    """SETEX as the SDK sends it (redis-py deprecates its setex() helper)."""
    return bool(client.execute_command("SETEX", key, seconds, value))


# -- item 9: Redis ---------------------------------------------------------------------------


def test_an_agent_cannot_leave_database_zero(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    assert agent.execute_command("SELECT", 0)  # clients that select 0 still work
    for database in (1, 15, -1):
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.execute_command("SELECT", database)
    # And the server has one database: even its administrator finds no other.
    admin = redis_client(redis_server.url)
    with pytest.raises(redis.exceptions.ResponseError, match="DB index is out of range"):
        admin.execute_command("SELECT", 1)
    for command in (("SWAPDB", 0, 1), ("MOVE", f"handoff:state:{ns}:payments-agent:x", 1),
                    ("COPY", f"handoff:state:{ns}:payments-agent:x", "y", "DB", 1)):  # fmt: skip
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.execute_command(*command)


def test_the_consoles_reader_stays_in_database_zero(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    reader = redis_client(console_reader(redis_server, tmp_path))
    assert reader.execute_command("SELECT", 0)
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.execute_command("SELECT", 1)


def test_every_key_an_agent_writes_expires(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    key = f"handoff:state:{ns}:payments-agent:p-1"
    assert setex(agent, key, 60, b"state")
    assert 0 < agent.ttl(key) <= 60
    assert agent.execute_command("PSETEX", key + "b", 60_000, b"state")
    # Each way to write a key without a TTL, or to take its TTL away, is refused.
    for attempt in (
        lambda: agent.set(key, b"forever"),
        lambda: agent.set(key, b"forever", keepttl=True),
        lambda: agent.getex(key, persist=True),
        lambda: agent.persist(key),
        lambda: agent.setnx(key + "c", b"forever"),
        lambda: agent.mset({key + "d": b"forever"}),
        lambda: agent.append(key, b"more"),
        lambda: agent.setrange(key, 0, b"x"),
        lambda: agent.incr(key + "e"),
        lambda: agent.hset(key + "f", "a", "b"),
        lambda: agent.lpush(key + "g", "a"),
        lambda: agent.xadd(key + "h", {"a": "b"}),
        lambda: agent.copy(key, key + "i"),
        lambda: agent.rename(key, key + "j"),
        lambda: agent.restore(key + "k", 0, agent.dump(key) or b""),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert agent.ttl(key) > 0
    assert not agent.exists(key + "c", key + "d", key + "e", key + "f", key + "g", key + "h")


def test_no_value_over_one_mebibyte(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    key = f"handoff:state:{ns}:payments-agent:big"
    assert setex(agent, key, 60, b"x" * MIB)  # the most a state may take
    # "Protocol error: invalid bulk length", and the server closes the connection: the client
    # sees the answer or the reset, whichever comes first.
    refused = (redis.exceptions.ResponseError, redis.exceptions.ConnectionError)
    with pytest.raises(refused):
        setex(agent, key + "2", 60, b"x" * (MIB + 1))
    outcomes = f"handoff:outcomes:{ns}:payments-agent"
    with pytest.raises(refused):
        agent.xadd(outcomes, {"name": "r", "message": b"x" * (MIB + 1)})
    admin = redis_client(redis_server.url)
    assert not admin.exists(key + "2")
    assert not admin.exists(outcomes)


def test_the_agent_cannot_trim_or_write_what_the_operator_publishes(
    redis_server: RedisServer,
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    decisions = f"handoff:decisions:{ns}:payments-agent"
    for attempt in (
        lambda: agent.xtrim(decisions, maxlen=0),
        lambda: agent.xdel(decisions, "0-1"),
        lambda: agent.xadd(decisions, {"outcome": "Approved"}, maxlen=1),
        lambda: agent.xgroup_destroy(decisions, "agent"),
        lambda: agent.xgroup_setid(decisions, "agent", "$"),
        lambda: agent.xadd("handoff:audit", {"event": "Approved"}),
        lambda: agent.hset(dedup_key(ns, "u-1"), "decision", "1"),
        lambda: agent.execute_command("FLUSHDB"),
        lambda: agent.execute_command("FUNCTION", "FLUSH"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis whose memory cap a test can reach in a second."""
    server = RedisServer(tmp_path / "redis", maxmemory="6mb")
    server.start()
    yield server
    server.stop()


def test_a_full_redis_refuses_writes_and_never_evicts_handoffs_keys(
    small_redis: RedisServer,
) -> None:
    """The agent fills the memory cap with state (TTLs of a century) and outcomes: its writes
    are refused, and every decision, audit entry and dedup mark stays."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    admin = redis_client(small_redis.url)
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    agent = redis_client(agent_user(small_redis, ns))
    decisions = f"handoff:decisions:{ns}:payments-agent"

    async def publish(uid: str) -> bool:
        """As the operator publishes a decision (dedup mark and stream entry in one script)."""
        outbox = RedisOutbox(small_redis.url)
        try:
            record = Record(decisions, "decision", {"name": uid, "outcome": "Approved"})
            return await outbox.publish(ns, uid, record)
        finally:
            await outbox.close()

    assert asyncio.run(publish("u-before"))
    assert admin.ttl(dedup_key(ns, "u-before")) > 0  # a volatile key: volatile-* could evict it
    century = 100 * 365 * 24 * 3600

    def fill() -> None:
        for i in range(1000):
            setex(agent, f"handoff:state:{ns}:payments-agent:{i}", century, b"x" * 64 * 1024)

    with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
        fill()
    with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
        agent.xadd(f"handoff:outcomes:{ns}:payments-agent", {"name": "x", "pad": b"y" * 65536})
    # Handoff's own keys are all there; its next write fails whole, and is retried later.
    assert admin.exists(dedup_key(ns, "u-before"))
    assert admin.xlen(decisions) == 1
    with pytest.raises(OutboxError):
        asyncio.run(publish("u-during"))
    assert not admin.exists(dedup_key(ns, "u-during"))
    # Once the agent's keys are gone (expired, or removed by an administrator) it goes through.
    for key in admin.scan_iter(f"handoff:state:{ns}:payments-agent:*"):
        admin.delete(key)
    assert asyncio.run(publish("u-during"))
    assert admin.xlen(decisions) == 2

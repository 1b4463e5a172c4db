"""Publishing records to Redis streams exactly once, and the in-memory twin for unit tests;
reading the agents' outcome streams, and the audit stream for the console's feed.

Exactly once: a Lua script sets a per-request dedup field and appends to the stream in one
atomic step, so a retry, a restart or a second operator never publishes the same record twice.
Both sit in the same append-only file, so a Redis crash loses or keeps them together.
"""

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError as _LibraryRedisError

from handoff.adapters.coalesce import CoalescedReads
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.records import Record

AUDIT_MAXLEN = 100_000  # the audit stream is capped; the durable trail is the operator's log

_PUBLISH_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
else
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
end
return 1
"""
# The same for several records of one request in one call (KEYS: its dedup hash, then each
# record's stream; ARGV: the TTL, then per record its dedup field, maxlen, field count and
# fields): one round trip, where a pipeline of _PUBLISH_ONCE costs two (redis-py asks SCRIPT
# EXISTS before every pipeline that runs a script).
_PUBLISH_EACH_ONCE = """
local out, i = {}, 2
for k = 2, #KEYS do
  local dedup, maxlen, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local fields = {unpack(ARGV, i + 3, i + 2 + n)}
  i = i + 3 + n
  if redis.call('HSETNX', KEYS[1], dedup, '1') == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    if maxlen ~= '0' then
      redis.call('XADD', KEYS[k], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    else
      redis.call('XADD', KEYS[k], '*', unpack(fields))
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
DEDUP_TTL = 60 * 60 * 24 * 30  # seconds a request's dedup fields outlive their last publication


class OutboxError(Exception):
    """Redis could not be reached; the record stays in the request's status and is retried."""


class Outbox(Protocol):
    async def publish(self, namespace: str, uid: str, record: Record) -> bool:
        """Append ``record`` unless it was appended before; True when appended now."""
        ...

    async def publish_all(self, namespace: str, uid: str, records: list[Record]) -> list[bool]:
        """``publish`` each of ``records``, in order, in one round trip: whether each was
        appended now."""
        ...

    async def forget(self, namespace: str, uid: str) -> None:
        """Drop a deleted request's dedup fields."""
        ...

    async def marked(self, namespace: str, uid: str, key: str) -> bool:
        """Whether ``key`` was marked done for this request (a sent notification, say)."""
        ...

    async def mark(self, namespace: str, uid: str, key: str) -> None: ...

    async def present(self, namespace: str, uid: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` (dedup fields and marks) this request has: one round trip."""
        ...

    async def remember(self, namespace: str, uid: str, key: str, value: str) -> None:
        """Keep a small value beside the marks (a Slack message's channel and ts), as long."""
        ...

    async def recall(self, namespace: str, uid: str, key: str) -> str | None: ...

    async def epoch(self) -> str:
        """Which life of the store this is: it changes when the store restarts or fails over,
        which is when acknowledged writes may have been lost."""
        ...


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    """Redis (or the network to it) failed: one OutboxError that names the library's error."""
    try:
        yield
    except (_LibraryRedisError, OSError) as e:
        raise OutboxError(f"Redis: {type(e).__name__}") from e


def dedup_key(namespace: str, uid: str) -> str:
    return f"handoff:published:{namespace}:{uid}"


def _publish_args(namespace: str, uid: str, record: Record) -> tuple[list[Any], list[Any]]:
    """The keys and arguments of _PUBLISH_ONCE for ``record``."""
    maxlen = AUDIT_MAXLEN if record.stream == AUDIT_STREAM else 0
    flat = [item for pair in record.fields.items() for item in pair]
    return [dedup_key(namespace, uid), record.stream], [record.dedup, DEDUP_TTL, maxlen, *flat]


class RedisOutbox:
    def __init__(self, url: str) -> None:
        self._client = redis_asyncio.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._client.register_script(_PUBLISH_ONCE)
        self._each = self._client.register_script(_PUBLISH_EACH_ONCE)
        self._reads = CoalescedReads(self._client)  # a start's many `present`s, a few trips

    async def publish(self, namespace: str, uid: str, record: Record) -> bool:
        with _redis_errors():
            keys, args = _publish_args(namespace, uid, record)
            done = await self._script(keys=keys, args=args)
        return bool(done)

    async def publish_all(self, namespace: str, uid: str, records: list[Record]) -> list[bool]:
        if len(records) < 2:
            return [await self.publish(namespace, uid, record) for record in records]
        keys: list[Any] = [dedup_key(namespace, uid)]
        args: list[Any] = [DEDUP_TTL]
        for record in records:
            _, (dedup, _ttl, maxlen, *flat) = _publish_args(namespace, uid, record)
            keys.append(record.stream)
            args += [dedup, maxlen, len(flat), *flat]
        with _redis_errors():
            done = await self._each(keys=keys, args=args)
        return [bool(d) for d in done]

    async def forget(self, namespace: str, uid: str) -> None:
        with _redis_errors():
            await self._client.delete(dedup_key(namespace, uid))

    async def marked(self, namespace: str, uid: str, key: str) -> bool:
        with _redis_errors():
            return bool(await self._client.hexists(dedup_key(namespace, uid), key))

    async def mark(self, namespace: str, uid: str, key: str) -> None:
        await self.remember(namespace, uid, key, "1")

    async def present(self, namespace: str, uid: str, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        with _redis_errors():
            values = await self._reads.hmget(dedup_key(namespace, uid), keys)
        return {key for key, value in zip(keys, values, strict=True) if value is not None}

    async def remember(self, namespace: str, uid: str, key: str, value: str) -> None:
        with _redis_errors():  # one round trip, and never a field without its expiry
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(dedup_key(namespace, uid), key, value)
                pipe.expire(dedup_key(namespace, uid), DEDUP_TTL)
                await pipe.execute()

    async def recall(self, namespace: str, uid: str, key: str) -> str | None:
        with _redis_errors():
            value = await self._client.hget(dedup_key(namespace, uid), key)
        return value.decode() if isinstance(value, bytes) else value

    async def epoch(self) -> str:
        """The server's run_id: new after every restart, and on another server after a failover."""
        with _redis_errors():
            info = await self._client.info("server")
        return str(info.get("run_id", ""))

    async def close(self) -> None:
        await self._reads.close()
        await self._client.aclose()


class MemoryOutbox:
    """Streams as lists, for unit tests of what gets published."""

    def __init__(self) -> None:
        self.streams: dict[str, list[dict[str, str]]] = {}
        self.seen: set[tuple[str, str, str]] = set()
        self.down = False
        self.run_id = "1"
        self.values: dict[tuple[str, str, str], str] = {}

    async def publish(self, namespace: str, uid: str, record: Record) -> bool:
        if self.down:
            raise OutboxError("Redis: ConnectionError")
        if (namespace, uid, record.dedup) in self.seen:
            return False
        self.seen.add((namespace, uid, record.dedup))
        self.streams.setdefault(record.stream, []).append(dict(record.fields))
        return True

    async def publish_all(self, namespace: str, uid: str, records: list[Record]) -> list[bool]:
        return [await self.publish(namespace, uid, record) for record in records]

    async def forget(self, namespace: str, uid: str) -> None:
        self.seen = {s for s in self.seen if s[:2] != (namespace, uid)}

    async def marked(self, namespace: str, uid: str, key: str) -> bool:
        return (namespace, uid, key) in self.seen

    async def mark(self, namespace: str, uid: str, key: str) -> None:
        self.seen.add((namespace, uid, key))

    async def present(self, namespace: str, uid: str, keys: list[str]) -> set[str]:
        if self.down:
            raise OutboxError("Redis: ConnectionError")
        return {key for key in keys if (namespace, uid, key) in self.seen}

    async def remember(self, namespace: str, uid: str, key: str, value: str) -> None:
        self.values[(namespace, uid, key)] = value

    async def recall(self, namespace: str, uid: str, key: str) -> str | None:
        return self.values.get((namespace, uid, key))

    async def epoch(self) -> str:
        if self.down:
            raise OutboxError("Redis: ConnectionError")
        return self.run_id

    def lose_everything(self) -> None:
        """A restart that kept nothing (a crash inside the fsync interval, a lagging replica)."""
        self.streams, self.seen, self.run_id = {}, set(), str(int(self.run_id) + 1)


class RedisOutcomes:
    """The operator's reader of the agents' outcome streams (consumer group ``operator``).

    Entries are what an agent wrote: they come back as bytes, undecoded, for the caller to
    judge. Once an entry is acknowledged it is deleted, so that a stream holds only what is not
    consumed yet and cannot grow without limit by being read.
    """

    GROUP = "operator"
    COUNT = 10  # entries per stream and read: an agent chooses their size

    def __init__(self, url: str, consumer: str) -> None:
        self._client = redis_asyncio.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._consumer = consumer
        self._ready: set[str] = set()
        self._backlog_read: set[str] = set()

    async def read(
        self, streams: list[str], block_ms: int = 1000
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """New outcomes (and, the first time a stream is read or after ``reread``, this
        consumer's unacknowledged ones) as (stream, id, fields); an entry deleted while pending
        comes back with no fields."""
        try:
            for stream in streams:
                if stream not in self._ready:
                    try:
                        await self._client.xgroup_create(stream, self.GROUP, id="0", mkstream=True)
                    except _LibraryRedisError as e:
                        if "BUSYGROUP" not in str(e):
                            raise
                    self._ready.add(stream)
            if not streams:
                return []
            backlog = [s for s in streams if s not in self._backlog_read]
            ids: dict[Any, Any] = {s: ("0" if s in backlog else ">") for s in streams}
            answer: Any = await self._client.xreadgroup(
                self.GROUP, self._consumer, ids, count=self.COUNT,
                block=None if backlog else block_ms,
            )  # fmt: skip
            self._backlog_read.update(backlog)
        except (_LibraryRedisError, OSError) as e:
            self._ready.clear()
            self._backlog_read.clear()
            raise OutboxError(f"Redis: {type(e).__name__}") from e
        found: list[tuple[str, str, dict[bytes, bytes]]] = []
        for stream, entries in answer or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            for entry_id, fields in entries:
                key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                found.append((name, key, dict(fields or {})))
        return found

    async def claim(
        self, streams: list[str], min_idle_ms: int
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """Entries delivered to any consumer of the group (a former leader's, gone with it)
        and not acknowledged for ``min_idle_ms``, claimed for this one (XAUTOCLAIM), at most
        ``COUNT`` per stream a call. Entries deleted while pending are dropped by Redis."""
        found: list[tuple[str, str, dict[bytes, bytes]]] = []
        try:
            for stream in streams:
                if stream not in self._ready:
                    continue  # no group yet: read() makes it, and nothing was delivered
                answer: Any = await self._client.xautoclaim(
                    stream, self.GROUP, self._consumer, min_idle_ms, "0-0", count=self.COUNT
                )
                for entry_id, fields in answer[1] or []:
                    if fields is None:
                        continue
                    key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    found.append((stream, key, dict(fields)))
        except (_LibraryRedisError, OSError) as e:
            self._ready.clear()
            self._backlog_read.clear()
            raise OutboxError(f"Redis: {type(e).__name__}") from e
        return found

    def reread(self, stream: str) -> None:
        """Read this consumer's unacknowledged entries of ``stream`` again on the next read."""
        self._backlog_read.discard(stream)

    async def ack(self, stream: str, entry_id: str) -> None:
        """Acknowledge the entry and delete it: it is consumed."""
        with _redis_errors():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xack(stream, self.GROUP, entry_id)
                pipe.xdel(stream, entry_id)
                await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()


class AuditFeed:
    """The console's reader of the audit stream: the latest entries, then what comes after."""

    def __init__(self, url: str) -> None:
        self._client = redis_asyncio.from_url(url, socket_timeout=30)

    async def recent(self, count: int) -> list[tuple[Any, dict[Any, Any]]]:
        """The newest ``count`` entries, oldest first, as (id, fields)."""
        with _redis_errors():
            found: Any = await self._client.xrevrange(AUDIT_STREAM, count=count)
        return list(reversed(found))

    async def after(self, last: Any, block_ms: int, count: int) -> list[tuple[Any, dict[Any, Any]]]:
        """Entries after ``last`` ("$": from now), waiting up to ``block_ms`` for one."""
        with _redis_errors():
            answer: Any = await self._client.xread(
                {AUDIT_STREAM: last}, block=block_ms, count=count
            )
        return list(answer[0][1]) if answer else []

    async def close(self) -> None:
        await self._client.aclose()

"""Where a paused agent's working state waits: Redis in production, memory in unit tests.

A state is stored as an envelope: the serializer's bytes plus the digest of the spec proposed
with it, so a resumed agent can check that what was approved is what it proposed.
"""

import json
from datetime import timedelta
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from handoff.sdk.errors import HandoffError, redis_failure


class Serializer(Protocol):
    content_type: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    content_type = "application/json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class StateStore(Protocol):
    async def put(self, key: str, value: bytes, ttl: timedelta) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    async def take(self, key: str) -> bytes | None:
        """Read and delete in one atomic step: of several processes, one gets the value."""
        ...


#: The largest state Redis takes: the servers Handoff starts refuse any value over 1 MiB.
MAX_STATE_BYTES = 1024 * 1024


class RedisStateStore:
    def __init__(self, client: "redis_asyncio.Redis") -> None:
        self._client = client

    async def put(self, key: str, value: bytes, ttl: timedelta) -> None:
        if len(value) > MAX_STATE_BYTES:
            raise HandoffError(
                f"the agent's state is {len(value)} bytes once serialized; Redis takes at most"
                f" {MAX_STATE_BYTES}: keep large data elsewhere and save a reference to it"
            )
        try:
            # SETEX, not SET: the agent's Redis user may only write keys that expire. Sent as a
            # raw command: redis-py marks its setex() deprecated in favour of SET ... EX, which
            # the ACL could not tell from a SET without a TTL.
            seconds = max(1, int(ttl.total_seconds()))
            await self._client.execute_command("SETEX", key, seconds, value)  # type: ignore[no-untyped-call]
        except RedisError as e:
            raise redis_failure(e, "save the agent's state in Redis") from e

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(key)
        except RedisError as e:
            raise redis_failure(e, "read the agent's state from Redis") from e
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(key)
        except RedisError as e:
            raise redis_failure(e, "delete the agent's state in Redis") from e

    async def take(self, key: str) -> bytes | None:
        try:
            value = await self._client.getdel(key)
        except RedisError as e:
            raise redis_failure(e, "take the agent's state from Redis") from e
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)


class MemoryStateStore:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls: dict[str, timedelta] = {}

    async def put(self, key: str, value: bytes, ttl: timedelta) -> None:
        self.values[key] = value
        self.ttls[key] = ttl

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)

    async def take(self, key: str) -> bytes | None:
        return self.values.pop(key, None)


def envelope(serializer: Serializer, state: Any, digest: str) -> bytes:
    body = serializer.dumps(state)
    header = json.dumps({"v": 1, "digest": digest, "contentType": serializer.content_type})
    return header.encode() + b"\n" + body


def open_envelope(serializer: Serializer, data: bytes) -> tuple[Any, str]:
    """(state, digest) from what ``envelope`` wrote."""
    header, _, body = data.partition(b"\n")
    meta = json.loads(header)
    return serializer.loads(body), str(meta.get("digest", ""))

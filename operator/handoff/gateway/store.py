"""What the gateway keeps outside the API server, in Redis (append-only): each call key's
generation (so a retry finds its request and a call after the outcome files anew) and each
executed request's result (the request's status holds only its digest).

Redis layout:
- ``handoff:gateway:generation:{namespace}:{agent}:{key}``: the generation of that identical call.
- ``handoff:gateway:result:{uid}``: the upstream's result for request ``uid``, as JSON.
- ``handoff:gateway:salt``: a random key, set once, that makes request names unguessable.
- ``handoff:gateway:claim:{uid}``: the gateway (its owner id) that calls, or called, the upstream
  for request ``uid``: the executor or a tier-1 fast path. Set once; taken over by another
  gateway only when its owner is gone (below), never because a call takes long.
- ``handoff:gateway:alive:{owner}``: each running gateway's heartbeat, set every ``HEARTBEAT``
  seconds to live ``ALIVE`` seconds. An owner whose key has expired is gone: it did not reach Redis
  for ``ALIVE`` seconds, and a gateway starts no call unless its own key is known to live at
  least ``MARGIN`` seconds more (``lease_left``), so a gone owner starts nothing after that.

A call's request name is an HMAC of the agent, the call's key and its generation under the salt:
a name anyone could compute (a digest of the call) let another agent of the namespace file a
request there first, and the victim's every retry then filed anew.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import time
from typing import Any, Protocol

import redis.asyncio as redis_asyncio

SALT_KEY = "handoff:gateway:salt"
RESULT_TTL = 7 * 24 * 3600  # seconds a result waits for its client's retry
GENERATION_TTL = 30 * 24 * 3600
ALIVE = 15.0  # seconds a gateway's heartbeat lives
HEARTBEAT = 3.0  # seconds between heartbeats
MARGIN = 6.0  # seconds a gateway's own heartbeat must still live for it to start a call
FAILURE = "dev.handoff/failure"  # in a kept result's _meta: the call failed; record, never retry
log = logging.getLogger(__name__)
# Take a claim over from its owner only if that owner is gone (its heartbeat expired) and nobody
# took it over meanwhile: KEYS = claim, the owner's heartbeat; ARGV = the owner seen, me, ttl.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], '', 'PX', 1) end
return 0
"""
# Advance the generation only from the one that delivered: two clients that waited on the same
# request both get its outcome, and the generation moves once.
_ADVANCE = """
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], now + 1, 'EX', ARGV[2])
end
return now
"""


Delivered = tuple[str, str, str, int]  # namespace, agent, call key, generation


class Store(Protocol):
    owner: str  # this gateway's id in claims and heartbeats

    async def generation(self, namespace: str, agent: str, key: str) -> int: ...
    async def request_name(self, namespace: str, agent: str, key: str, generation: int) -> str: ...
    async def delivered(self, namespace: str, agent: str, key: str, generation: int) -> None: ...
    async def save_result(
        self, uid: str, result: dict[str, Any], delivered: "Delivered | None" = None
    ) -> str: ...
    async def result(self, uid: str) -> dict[str, Any] | None: ...
    async def claim(self, uid: str) -> str | None: ...
    async def release(self, uid: str) -> None: ...
    def lease_left(self) -> float: ...
    async def close(self) -> None: ...


def digest(result: dict[str, Any]) -> str:
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class RedisStore:
    def __init__(self, url: str, owner: str | None = None, alive: float = ALIVE) -> None:
        self.redis = redis_asyncio.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._salt: bytes | None = None
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
        self.alive = alive  # seconds our heartbeat lives (shorter in tests)
        self.margin = min(MARGIN, alive * 0.4)
        self._alive_until = 0.0  # time.monotonic() until which our heartbeat surely lives

    async def beat(self) -> None:
        """One heartbeat: this gateway is alive for ``alive`` seconds more."""
        sent = time.monotonic()
        key = f"handoff:gateway:alive:{self.owner}"
        await self.redis.set(key, "1", px=round(self.alive * 1000))
        self._alive_until = sent + self.alive

    async def heartbeat(self, every: float = HEARTBEAT) -> None:
        while True:
            try:
                await self.beat()
            except Exception as e:  # Redis away: calls stop starting once the lease runs short
                log.warning("the gateway's heartbeat did not reach Redis: %s", e)
            await asyncio.sleep(every)

    def lease_left(self) -> float:
        """Seconds our heartbeat surely lives, less the margin a call must start within (nobody
        takes our claims over before our heartbeat expires)."""
        return self._alive_until - time.monotonic() - self.margin

    async def generation(self, namespace: str, agent: str, key: str) -> int:
        value = await self.redis.get(_generation_key(namespace, agent, key))
        return int(value or 0)

    async def request_name(self, namespace: str, agent: str, key: str, generation: int) -> str:
        """The name this call's request gets: unguessable without the salt, stable for retries."""
        if self._salt is None:
            await self.redis.set(SALT_KEY, secrets.token_hex(32), nx=True)
            salt = await self.redis.get(SALT_KEY)
            if not salt:
                raise RuntimeError(f"Redis lost {SALT_KEY} as it was set")
            self._salt = salt.encode() if isinstance(salt, str) else bytes(salt)
        return name_for(self._salt, namespace, agent, key, generation)

    async def delivered(self, namespace: str, agent: str, key: str, generation: int) -> None:
        await self.redis.eval(
            _ADVANCE, 1, _generation_key(namespace, agent, key), generation, GENERATION_TTL
        )

    async def save_result(
        self, uid: str, result: dict[str, Any], delivered: "Delivered | None" = None
    ) -> str:
        """Keep ``result``; and, in the same round trip, advance the generation of the call it
        answers (``delivered``) when it is being delivered now (a tier-1 fast path)."""
        key = f"handoff:gateway:result:{uid}"
        if delivered is None:
            await self.redis.set(key, json.dumps(result), ex=RESULT_TTL)
            return digest(result)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, json.dumps(result), ex=RESULT_TTL)
            pipe.eval(_ADVANCE, 1, _generation_key(*delivered[:3]), delivered[3], GENERATION_TTL)
            await pipe.execute()
        return digest(result)

    async def result(self, uid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"handoff:gateway:result:{uid}")
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    async def claim(self, uid: str) -> str | None:
        """Whether this gateway is the one to call the upstream for ``uid``: "new" (nobody had),
        "taken over" (its owner is gone), or None (another live gateway holds it, or this one
        called already; or our own heartbeat is too short to start a call)."""
        if self.lease_left() <= 0:
            return None
        key = f"handoff:gateway:claim:{uid}"
        if await self.redis.set(key, self.owner, nx=True, ex=RESULT_TTL):
            return "new"
        owner = await self.redis.get(key)
        owner = owner.decode() if isinstance(owner, bytes) else owner
        if not owner or owner == self.owner:
            return None  # released (retry later) or ours: a gateway calls once per request
        alive = f"handoff:gateway:alive:{owner}"
        if await self.redis.eval(_TAKE_OVER, 2, key, alive, owner, self.owner, RESULT_TTL):
            return "taken over"
        return None

    async def release(self, uid: str) -> None:
        """Give up a claim before calling (another gateway may then take the call)."""
        await self.redis.eval(_RELEASE, 1, f"handoff:gateway:claim:{uid}", self.owner)

    async def close(self) -> None:
        await self.redis.aclose()


def _generation_key(namespace: str, agent: str, key: str) -> str:
    return f"handoff:gateway:generation:{namespace}:{agent}:{key}"


def name_for(salt: bytes, namespace: str, agent: str, key: str, generation: int) -> str:
    message = f"{namespace}/{agent}/{key}/{generation}".encode()
    return f"mcp-{hmac.new(salt, message, hashlib.sha256).hexdigest()[:40]}"

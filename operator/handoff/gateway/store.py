"""What the gateway keeps outside the API server, in Redis (append-only): each call key's
generation (so a retry finds its request and a call after the outcome files anew) and each
executed request's result (the request's status holds only its digest).

Redis layout:
- ``handoff:gateway:generation:{namespace}:{agent}:{key}``: the generation of that identical call.
- ``handoff:gateway:result:{uid}``: the upstream's result for request ``uid``, as JSON.
- ``handoff:gateway:salt``: a random key, set once, that makes request names unguessable.
- ``handoff:gateway:claim:{uid}``: set (once, with a time to live) by whoever is about to call the
  upstream for request ``uid``: the executor or a tier-1 fast path; nobody else calls meanwhile.

A call's request name is an HMAC of the agent, the call's key and its generation under the salt:
a name anyone could compute (a digest of the call) let another agent of the namespace file a
request there first, and the victim's every retry then filed anew.
"""

import hashlib
import hmac
import json
import secrets
from typing import Any, Protocol

import redis.asyncio as redis_asyncio

SALT_KEY = "handoff:gateway:salt"
RESULT_TTL = 7 * 24 * 3600  # seconds a result waits for its client's retry
GENERATION_TTL = 30 * 24 * 3600
# Advance the generation only from the one that delivered: two clients that waited on the same
# request both get its outcome, and the generation moves once.
_ADVANCE = """
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], now + 1, 'EX', ARGV[2])
end
return now
"""


class Store(Protocol):
    async def generation(self, namespace: str, agent: str, key: str) -> int: ...
    async def request_name(self, namespace: str, agent: str, key: str, generation: int) -> str: ...
    async def delivered(self, namespace: str, agent: str, key: str, generation: int) -> None: ...
    async def save_result(self, uid: str, result: dict[str, Any]) -> str: ...
    async def result(self, uid: str) -> dict[str, Any] | None: ...
    async def claim(self, uid: str, seconds: float) -> bool: ...
    async def close(self) -> None: ...


def digest(result: dict[str, Any]) -> str:
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class RedisStore:
    def __init__(self, url: str) -> None:
        self.redis = redis_asyncio.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        self._salt: bytes | None = None

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

    async def save_result(self, uid: str, result: dict[str, Any]) -> str:
        await self.redis.set(f"handoff:gateway:result:{uid}", json.dumps(result), ex=RESULT_TTL)
        return digest(result)

    async def result(self, uid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"handoff:gateway:result:{uid}")
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    async def claim(self, uid: str, seconds: float) -> bool:
        """Whether this caller is the one to call the upstream for ``uid`` (nobody claimed it in
        the last ``seconds``)."""
        key = f"handoff:gateway:claim:{uid}"
        return bool(await self.redis.set(key, "1", nx=True, ex=max(1, round(seconds))))

    async def close(self) -> None:
        await self.redis.aclose()


def _generation_key(namespace: str, agent: str, key: str) -> str:
    return f"handoff:gateway:generation:{namespace}:{agent}:{key}"


def name_for(salt: bytes, namespace: str, agent: str, key: str, generation: int) -> str:
    message = f"{namespace}/{agent}/{key}/{generation}".encode()
    return f"mcp-{hmac.new(salt, message, hashlib.sha256).hexdigest()[:40]}"

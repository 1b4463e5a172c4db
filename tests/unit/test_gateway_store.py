"""The gateway's Redis store keeps a fast path's result and advances its call's generation in one
script: on a real Redis, the result is kept, the generation moves once from the generation that
was delivered (never from a stale one), and a result saved with nothing delivered moves nothing."""

import asyncio
import json
import uuid

from handoff.devenv.redis import RedisServer
from handoff.gateway.store import RESULT_TTL, RedisStore

RESULT = {"content": [{"type": "text", "text": "account a: balance 1000"}], "isError": False}


async def _save_and_advance(url: str) -> None:
    store = RedisStore(url)
    ns, agent, key = "ns", "agent", uuid.uuid4().hex
    try:
        first, second, third = (str(uuid.uuid4()) for _ in range(3))
        assert await store.generation(ns, agent, key) == 0
        await store.save_result(first, RESULT, (ns, agent, key, 0))
        assert await store.result(first) == RESULT
        assert await store.generation(ns, agent, key) == 1
        assert 0 < await store.redis.ttl(f"handoff:gateway:result:{first}") <= RESULT_TTL
        # A second client that waited on the same request (generation 0) moves nothing again.
        await store.save_result(second, RESULT, (ns, agent, key, 0))
        assert await store.generation(ns, agent, key) == 1
        assert await store.result(second) == RESULT
        await store.save_result(third, {"isError": True, "content": []})
        assert await store.generation(ns, agent, key) == 1
        raw = await store.redis.get(f"handoff:gateway:result:{third}")
        assert json.loads(raw) == {"isError": True, "content": []}
        await store.delivered(ns, agent, key, 1)
        assert await store.generation(ns, agent, key) == 2
        await store.delivered(ns, agent, key, 1)  # stale: no second move
        assert await store.generation(ns, agent, key) == 2
    finally:
        await store.close()


async def _scripts_survive_a_flush(url: str) -> None:
    """Redis forgets its scripts on a restart or SCRIPT FLUSH: the next save loads it again."""
    store = RedisStore(url)
    key, uid = uuid.uuid4().hex, str(uuid.uuid4())
    try:
        await store.save_result(str(uuid.uuid4()), RESULT, ("ns", "a", key, 0))
        await store.redis.script_flush()
        await store.save_result(uid, RESULT, ("ns", "a", key, 1))
        assert await store.result(uid) == RESULT
        assert await store.generation("ns", "a", key) == 2
    finally:
        await store.close()


def test_a_result_is_kept_and_its_generation_advanced_once(redis_server: RedisServer) -> None:
    asyncio.run(_save_and_advance(redis_server.url))


def test_the_save_script_is_loaded_again_after_redis_forgot_it(redis_server: RedisServer) -> None:
    asyncio.run(_scripts_survive_a_flush(redis_server.url))

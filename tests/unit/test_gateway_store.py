"""The gateway's Redis store keeps a fast path's result and advances its call's generation in one
round trip: on a real Redis, as the gateway's own Redis user (its ACL allows GET, SET and
EVAL only), the result is kept, the generation moves once from the generation that was delivered
(never from a stale one), and a result saved with nothing delivered moves nothing."""

import asyncio
import json
import uuid

import redis.asyncio as redis_asyncio
from handoff.adapters.redis_acl import ensure_gateway
from handoff.devenv.redis import RedisServer
from handoff.gateway.store import RESULT_TTL, RedisStore

RESULT = {"content": [{"type": "text", "text": "account a: balance 1000"}], "isError": False}


async def _save_and_advance(url: str) -> None:
    store = RedisStore(await ensure_gateway(url, "store-test"))  # the gateway's own ACL user
    ns, agent, key = "ns", "agent", uuid.uuid4().hex
    try:
        first, second, third = (str(uuid.uuid4()) for _ in range(3))
        assert await store.generation(ns, agent, key) == 0
        await store.save_result(first, RESULT, (ns, agent, key, 0))
        assert await store.result(first) == RESULT
        assert await store.generation(ns, agent, key) == 1
        admin = redis_asyncio.from_url(url)
        assert 0 < await admin.ttl(f"handoff:gateway:result:{first}") <= RESULT_TTL
        await admin.aclose()
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


def test_a_result_is_kept_and_its_generation_advanced_once(redis_server: RedisServer) -> None:
    asyncio.run(_save_and_advance(redis_server.url))

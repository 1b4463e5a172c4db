"""Two gateways, or a gateway killed mid-execution, never call the upstream twice for one request.

The executor's protocol against a real Redis (the gateway's own ACL user), with the request in a
stand-in API server that guards status patches by resourceVersion as the real one does, and an
upstream that counts calls and can be held. Reproduced first against the old protocol: a call
slower than the mark's staleness window (90 s in production, 1 s here) was called again by a
second live gateway, because a mark older than that counted as left by a dead gateway.
"""

import asyncio
import copy
from typing import Any

import mcp_types as types
import pytest
from handoff.adapters.kube import Conflict
from handoff.devenv.gateway import gateway_redis_url
from handoff.gateway.execute import Executor
from handoff.gateway.registry import Registry
from handoff.gateway.servers import compile_server
from handoff.gateway.store import RedisStore

pytestmark = pytest.mark.integration
ALIVE = 2.0  # seconds a test gateway's heartbeat lives (15 in production)
BEAT = 0.3


class Api:
    """One ActionRequest; status patches guarded by resourceVersion, as the API server does."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    async def get(self, path: str) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        meta = self.body["metadata"]
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != meta["resourceVersion"]:
            raise Conflict(409, "the object has been modified")
        self.body["status"] = self.body.get("status", {}) | patch.get("status", {})
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.body)


class Upstream:
    def __init__(self) -> None:
        self.calls: list[str] = []  # the idempotency keys received
        self.release = asyncio.Event()
        self.listing = asyncio.Event()  # set: tools/list answers at once
        self.listing.set()

    async def tools(self, server: Any, fresh: bool = False) -> dict[str, types.Tool]:
        await self.listing.wait()
        return {"transfer": types.Tool(name="transfer", input_schema={"type": "object"})}

    async def call(self, server: Any, tool: str, arguments: Any, key: str) -> dict[str, Any]:
        self.calls.append(key)
        await self.release.wait()
        return {"content": [{"type": "text", "text": "done"}], "isError": False}


def request() -> dict[str, Any]:
    return {
        "metadata": {"name": "mcp-1", "namespace": "ns", "uid": "uid-1", "resourceVersion": "1"},
        "spec": {"agent": "a", "action": "mcp.bank.transfer", "target": "mcp:bank/transfer",
                 "parameters": {"to": "x"}, "execution": "MCP"},
        "status": {"decision": {"outcome": "Approved"}, "phase": "Approved"},
    }  # fmt: skip


def gateway(url: str, api: Api, upstream: Upstream, owner: str) -> tuple[Executor, RedisStore]:
    store = RedisStore(url, owner=owner, alive=ALIVE)
    registry = Registry(api, upstream)  # type: ignore[arg-type]
    server = compile_server({"metadata": {"name": "bank", "namespace": "ns", "generation": 1},
                             "spec": {"url": "http://bank", "agents": {"serviceAccounts": ["a"]}}})  # fmt: skip
    registry.servers = {("ns", "bank"): server}
    executor = Executor(api, registry, upstream, store, stale=1.0)  # type: ignore[arg-type]
    return executor, store


async def until(check: Any, what: str, seconds: float = 8.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


@pytest.fixture
def url(redis_server: Any) -> str:
    return gateway_redis_url(redis_server.url)


def test_a_slow_call_is_never_called_again_by_a_second_live_gateway(url: str) -> None:
    async def scenario() -> None:
        api, upstream = (
            Api(request() | {"metadata": request()["metadata"] | {"uid": "slow"}}),
            Upstream(),
        )
        (a, sa), (b, sb) = (
            gateway(url, api, upstream, "a-slow"),
            gateway(url, api, upstream, "b-slow"),
        )
        beats = [asyncio.create_task(s.heartbeat(BEAT)) for s in (sa, sb)]
        await until(lambda: sa.lease_left() > 0 and sb.lease_left() > 0, "heartbeats")
        first = asyncio.create_task(a.run(api.body))
        await until(lambda: len(upstream.calls) == 1, "the first gateway calls")
        await asyncio.sleep(1.5)  # older than the old staleness window; A is alive and calling
        after = await b.run(await api.get(""))
        assert upstream.calls == ["slow"], "the second gateway called beside the first"
        assert after["status"]["execution"]["outcome"] == "Executing"
        upstream.release.set()
        done = await first
        assert done["status"]["execution"]["outcome"] == "Executed"
        again = await b.run(await api.get(""))  # recorded: nobody calls again
        assert again["status"]["phase"] == "Executed"
        assert upstream.calls == ["slow"]
        for task in beats:
            task.cancel()
        await sa.close()
        await sb.close()

    asyncio.run(scenario())


def test_a_gateway_killed_before_its_call_is_taken_over_only_once_it_is_gone(url: str) -> None:
    async def scenario() -> None:
        api, upstream = (
            Api(request() | {"metadata": request()["metadata"] | {"uid": "killed"}}),
            Upstream(),
        )
        (a, sa), (b, sb), (c, sc) = (gateway(url, api, upstream, f"{n}-killed") for n in "abc")
        beats = {s.owner: asyncio.create_task(s.heartbeat(BEAT)) for s in (sa, sb, sc)}
        await until(lambda: min(s.lease_left() for s in (sa, sb, sc)) > 0, "heartbeats")
        upstream.listing.clear()  # A marks, then hangs listing the tools (before its call)
        first = asyncio.create_task(a.run(api.body))
        await until(lambda: api.body["status"].get("execution", {}).get("outcome") == "Executing",
                    "A's mark")  # fmt: skip
        first.cancel()  # SIGKILL: its heartbeat stops too
        beats.pop(sa.owner).cancel()
        upstream.listing.set()
        # While A's heartbeat lives, A might still be calling: nobody takes over.
        held = await b.run(await api.get(""))
        assert held["status"]["execution"]["outcome"] == "Executing"
        assert upstream.calls == []
        await asyncio.sleep(ALIVE + 0.2)  # A is gone now
        upstream.release.set()
        results = await asyncio.gather(b.run(await api.get("")), c.run(await api.get("")))
        assert upstream.calls == ["killed"], "exactly one of B and C called, once"
        assert any(r["status"].get("phase") == "Executed" for r in results)
        assert api.body["status"]["execution"]["outcome"] == "Executed"
        for task in beats.values():
            task.cancel()
        for store in (sa, sb, sc):
            await store.close()

    asyncio.run(scenario())

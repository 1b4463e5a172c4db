"""The gateway's report of an MCPServer's status: a report the API server did not take (busy,
restarting) is tried again with the unready servers, seconds later, not at the next full round a
minute later (an integration run under load waited 30 s for Ready that never came)."""

import asyncio
from typing import Any

from handoff.adapters.kube import KubeError
from handoff.gateway.registry import Registry
from handoff.gateway.servers import compile_server
from handoff.gateway.upstream import UpstreamError
from mcp import types


def body() -> dict[str, Any]:
    return {
        "metadata": {"name": "bank", "namespace": "ns", "generation": 1},
        "spec": {"url": "http://127.0.0.1:1/mcp", "agents": {"serviceAccounts": ["a"]},
                 "tools": [{"name": "read", "target": "'x'"}]},
    }  # fmt: skip


class Api:
    """Refuses the first ``refusals`` status writes with a 503, then keeps them."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.written: list[dict[str, Any]] = []

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        if self.refusals:
            self.refusals -= 1
            raise KubeError(503, "the API server is restarting")
        self.written.append(patch)
        return patch

    async def get(self, path: str) -> dict[str, Any]:
        return {"items": []}


class Upstreams:
    async def tools(self, server: Any, fresh: bool = False) -> dict[str, types.Tool]:
        return {"read": types.Tool(name="read", input_schema={"type": "object"})}


def registry(api: Api) -> Registry:
    found = Registry(api, Upstreams())  # type: ignore[arg-type]
    server = compile_server(body())
    found.servers[("ns", "bank")] = server
    found._bodies[("ns", "bank")] = body()
    return found


def ready(api: Api) -> list[str]:
    return [c["status"] for p in api.written for c in p["status"]["conditions"]
            if c["type"] == "Ready"]  # fmt: skip


def test_a_status_the_api_server_did_not_take_is_written_at_the_next_retry() -> None:
    api = Api(refusals=1)
    found = registry(api)

    async def run() -> None:
        await found.report(found.servers[("ns", "bank")], body())
        assert api.written == []  # refused, and no exception escaped the background task
        retrying = asyncio.create_task(found.retry(every=0.01))
        for _ in range(200):
            if api.written:
                break
            await asyncio.sleep(0.01)
        retrying.cancel()

    asyncio.run(run())
    assert ready(api) == ["True"]


def test_a_written_ready_status_is_not_written_again_until_the_full_round() -> None:
    api = Api(refusals=0)
    found = registry(api)

    async def run() -> None:
        await found.report(found.servers[("ns", "bank")], body())
        retrying = asyncio.create_task(found.retry(every=0.01))
        await asyncio.sleep(0.2)  # 20 rounds of the unready ones: none is unready
        retrying.cancel()

    asyncio.run(run())
    assert ready(api) == ["True"]


class Flaky(Upstreams):
    """An upstream that answers as ``answering`` says at each call."""

    def __init__(self) -> None:
        self.answering = True

    async def tools(self, server: Any, fresh: bool = False) -> dict[str, types.Tool]:
        if not self.answering:
            raise UpstreamError("the upstream bank did not answer")
        return await super().tools(server, fresh)


def test_a_report_that_finds_nothing_new_writes_the_same_status() -> None:
    """Conditions keep their lastTransitionTime while their status holds (as Kubernetes keeps
    them): the retry every 5 s of an upstream that does not answer then writes the same bytes,
    which the API server neither stores again nor sends to the operator's watch."""
    api, upstreams = Api(refusals=0), Flaky()
    found = Registry(api, upstreams)  # type: ignore[arg-type]
    server = compile_server(body())

    def seen() -> dict[str, Any]:  # the MCPServer as the watch shows it after the last write
        return {**body(), "status": api.written[-1]["status"]}

    async def run() -> None:
        upstreams.answering = False
        await found.report(server, body())
        await asyncio.sleep(0.01)  # timestamps have microseconds: a new one would differ
        await found.report(server, seen())
        assert api.written[1] == api.written[0]
        upstreams.answering = True  # Ready turns True; Governed False (no rule names "read")
        await asyncio.sleep(0.01)
        await found.report(server, seen())

    asyncio.run(run())
    first, _, third = (w["status"]["conditions"] for w in api.written)
    assert [c["status"] for c in first] == ["False", "True"]
    assert [c["status"] for c in third] == ["True", "False"]
    assert third[0]["lastTransitionTime"] > first[0]["lastTransitionTime"]
    assert third[1]["lastTransitionTime"] > first[1]["lastTransitionTime"]

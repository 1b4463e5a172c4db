"""The gateway's upstream hop on its own: the same ``read_account`` call to the example bank,
back to back in alternating slices, through the bench's direct client (``mcp.Client``) and
through the gateway's ``Upstreams.call`` (its held session, its timeout, its idempotency key,
its result as a dict), with no control plane, Redis or operator beside it.

If the two take the same time here, what the gateway's upstream step costs more than a direct
call in the bench is the work around it (the API server, the operator and the gateway's own
watch handling the request just filed, on the same two cores), not the client.

Run: ``.venv/bin/python benchmarks/upstream_hop.py [--count N]``.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gateway
import httpx2
from handoff.gateway.servers import Server
from handoff.gateway.upstream import Upstreams
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


class _Bearer(Upstreams):
    def __init__(self, token: str) -> None:
        super().__init__(api=None)  # type: ignore[arg-type]  # no Secret to read here
        self.token = token

    async def _credentials(self, server: Server) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def timed(
    out: list[float], count: int, call: Callable[[int], Awaitable[Any]], pace: float
) -> None:
    for i in range(count):
        began = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - began)
        await asyncio.sleep(pace)


class _Seen:
    """The last tools/call request the SDK's client sent: its headers, to replay it raw."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: dict[str, Any] = {}

    async def hook(self, request: httpx2.Request) -> None:
        if b'"tools/call"' in request.content:
            self.headers = {k: v for k, v in request.headers.items()
                            if k.lower() not in ("content-length", "host")}  # fmt: skip
            self.body = json.loads(request.content)


async def raw_call(http: httpx2.AsyncClient, url: str, seen: _Seen, i: int) -> Any:
    """The floor of any client: one POST of the SDK's own request (new id and arguments), one
    JSON answer parsed."""
    body = dict(seen.body, id=i)
    body["params"] = dict(body["params"], arguments={"account": f"r{i}"})
    response = await http.post(url, content=json.dumps(body), headers=seen.headers)
    answer = json.loads(response.content) if "json" in response.headers["content-type"] else None
    if answer is None or "result" not in answer:
        raise RuntimeError(f"raw call: {response.status_code} {response.text[:300]}")
    return answer


async def main(count: int, pace: float) -> None:
    with tempfile.TemporaryDirectory() as folder, gateway._bank(Path(folder)) as (url, token):
        server = Server("bench", "bank", url, None, frozenset())
        upstreams = _Bearer(token)
        results: dict[str, list[float]] = {
            "direct (mcp.Client)": [], "gateway Upstreams.call": [], "raw httpx2 POST": []}  # fmt: skip
        seen = _Seen()
        hooked = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, event_hooks={"request": [seen.hook]}
        )
        async with hooked, Client(streamable_http_client(url, http_client=hooked)) as spy:
            await spy.list_tools()
            await spy.call_tool("read_account", {"account": "spy"})
        print(f"the SDK client's tools/call headers: {sorted(seen.headers)}")
        raw = httpx2.AsyncClient(timeout=30)
        async with raw, gateway.session(url, token) as direct:
            await upstreams.tools(server)
            for i in range(10):
                await direct.call_tool("read_account", {"account": f"w{i}"})
                await upstreams.call(server, "read_account", {"account": f"w{i}"}, str(i))
            done = 0
            while done < count:
                await timed(results["direct (mcp.Client)"], 20, lambda i: direct.call_tool(
                    "read_account", {"account": f"d{uuid.uuid4().hex}"}), pace)  # fmt: skip
                await timed(results["gateway Upstreams.call"], 20, lambda i: upstreams.call(
                    server, "read_account", {"account": f"g{uuid.uuid4().hex}"}, uuid.uuid4().hex),
                    pace)  # fmt: skip
                await timed(results["raw httpx2 POST"], 20, lambda i: raw_call(
                    raw, url, seen, i), pace)  # fmt: skip
                done += 20
        await upstreams.close()
    print(f"load average at the end: {os.getloadavg()}")
    for label, values in results.items():
        ms = sorted(v * 1000 for v in values)
        print(f"{label:<24} n={len(ms)}  median {statistics.median(ms):6.2f}"
              f"  p90 {ms[int(len(ms) * 0.9)]:6.2f}  mean {statistics.fmean(ms):6.2f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between calls")
    options = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}")
    asyncio.run(main(options.count, options.pace))

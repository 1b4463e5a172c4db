"""Tier 1 through the MCP gateway, beside the same call made directly to the upstream.

Runs against a running `handoff dev up` (its GATEWAY_URL). It starts the example bank
(examples/mcp_bank.py) as the upstream, declares it, and makes the same tier-1 `tools/call`
(read_account) at a fixed rate: through the gateway with the agent's token (each call filed as an
ActionRequest, decided AutoApproved by the operator, executed once and recorded), and directly to
the upstream with its own token, one client session each, in the same run.

Run: .venv/bin/python benchmarks/gateway_latency.py [--count 100] [--rate 5]
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
from common import stats, table
from handoff import paths
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import mcp_session  # noqa: E402 - the example's declarations, from examples/


async def paced(url: str, token: str, tool: str, count: int, rate: float) -> list[float]:
    """``count`` calls, one every 1/rate seconds (none overlapping), each timed on its own."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    latencies: list[float] = []
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        await client.list_tools()
        start = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            began = time.perf_counter()
            result = await client.call_tool(tool, {"account": f"bench-{i}"})
            latencies.append(time.perf_counter() - began)
            assert not result.is_error, result
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="calls per second")
    args = parser.parse_args()
    env = dict(line.split("=", 1) for line in (paths.dev_dir() / "env").read_text().splitlines())
    with mcp_session.bank_upstream() as (url, token):
        mcp_session.declare(env["KUBECONFIG"], url, token)
        agent = mcp_session.agent_token(env["KUBECONFIG"])
        direct = asyncio.run(paced(url, token, "read_account", args.count, args.rate))
        gateway = asyncio.run(
            paced(env["GATEWAY_URL"], agent, "bank__read_account", args.count, args.rate)
        )
    rows: list[dict[str, Any]] = [
        {"path": "direct to the upstream", **stats(direct, 1000)},
        {"path": "through the gateway (tier 1)", **stats(gateway, 1000)},
    ]
    overhead = rows[1]["median"] - rows[0]["median"]
    print(f"tier-1 tools/call at {args.rate}/s, {args.count} calls each (ms)")
    print(table(rows, [("path", "path"), ("n", "n"), ("median", "median"), ("p99", "p99")]))
    print(f"median overhead {overhead:.1f} ms, {rows[1]['median'] / rows[0]['median']:.1f}x the"
          " direct call (goal: at most 2x and under 20 ms)")  # fmt: skip
    output = ROOT / ".handoff" / "bench-gateway-latency.json"
    output.write_text(json.dumps({"rows": rows, "overhead_ms": round(overhead, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

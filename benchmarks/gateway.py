"""Tier 1 through the MCP gateway, beside the same call made directly to the upstream.

In the bench's own control plane: the example bank (examples/mcp_bank.py) as the upstream,
declared as an MCPServer with a policy that puts ``read_account`` in tier 1, the operator and
``handoff gateway`` as child processes. The same tier-1 ``tools/call`` at a fixed rate, one
client session each, in the same run: directly to the upstream with its own token, and through
the gateway with the agent's token (each call filed as an ActionRequest with that token, decided
AutoApproved by the operator, and its execution recorded). The two paths alternate in slices, so
other work on the machine weighs on both alike.
"""

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import gateway_steps
import httpx2
from common import stats
from environment import BenchEnvironment
from handoff.devenv import processes
from handoff.testing.gateway import GatewayProcess
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
NS = "bench-gateway"
AGENT = "gateway-agent"
TOOL = "read_account"
RULES = [
    {"name": "reads", "actions": ["mcp.bank.read_account"], "tier": 1},
    {"name": "limits", "actions": ["mcp.bank.set_limit"], "tier": 2},
    {"name": "money", "actions": ["mcp.bank.transfer"], "tier": 4},
]
GOAL_RATIO = 2.0
GOAL_OVERHEAD_MS = 20.0


@contextlib.contextmanager
def _bank(folder: Path) -> Any:
    port, token = processes.free_port(), uuid.uuid4().hex
    argv = [sys.executable, str(ROOT / "examples" / "mcp_bank.py"), str(port),
            str(folder / "calls.jsonl"), token]  # fmt: skip
    process = processes.spawn("bank", argv, folder)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        processes.wait_until(
            lambda: _listening(port), 30, "the bank MCP server", folder / "bank.log"
        )
        yield url, token
    finally:
        processes.end(process, 10)


def _listening(port: int) -> bool:
    import socket  # noqa: PLC0415

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


async def declare(env: BenchEnvironment, url: str, token: str) -> None:
    """The namespace, its agent, the tier-1 policy, the upstream's Secret and the MCPServer."""
    assert env.cluster is not None
    env.namespace(NS, (AGENT,))
    await env.apply_policy(NS, "bench-gateway", {
        "agents": {"serviceAccounts": [AGENT]}, "reviewers": {"groups": ["payments-approvers"]},
        "rules": RULES})  # fmt: skip
    env.cluster.apply({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "bank-mcp", "namespace": NS,
                                    "annotations": {"handoff.dev/mcp-server": "bank"}},
                       "stringData": {"Authorization": f"Bearer {token}"}})  # fmt: skip
    env.cluster.apply({"apiVersion": "handoff.dev/v1alpha1", "kind": "MCPServer",
                       "metadata": {"name": "bank", "namespace": NS},
                       "spec": {"url": url, "credentials": {"secretName": "bank-mcp"},
                                "agents": {"serviceAccounts": [AGENT]},
                                "tools": [{"name": TOOL, "target": "'account:' + args.account"}]}})  # fmt: skip


async def ready(env: BenchEnvironment) -> None:
    """Wait until the gateway has listed the upstream's tools (the MCPServer's Ready)."""
    assert env.cluster is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = env.cluster.get("mcpserver", "bank", NS)
        ready = [c for c in (body.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"]  # fmt: skip
        if ready and ready[0].get("status") == "True":
            return
        await asyncio.sleep(0.3)
    raise RuntimeError("the MCPServer bank did not become Ready")


@contextlib.asynccontextmanager
async def session(url: str, token: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        await client.list_tools()
        yield client


async def paced(client: Client, tool: str, count: int, rate: float, tag: str) -> list[float]:
    """``count`` calls, one every 1/rate seconds (none overlapping), each timed on its own.
    Every call has new arguments, so through the gateway each files a request of its own."""
    latencies: list[float] = []
    start = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        began = time.perf_counter()
        result = await client.call_tool(tool, {"account": f"bench-{tag}-{i}"})
        latencies.append(time.perf_counter() - began)
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {result.model_dump_json()[:500]}")
    return latencies


async def measure(
    env: BenchEnvironment, *, count: int, rate: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Tier-1 calls direct and through the gateway, alternating in slices of 20."""
    assert env.cluster is not None
    assert env.redis is not None
    folder = env.folder / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    with _bank(folder) as (url, upstream_token):
        await declare(env, url, upstream_token)
        gateway = GatewayProcess(env.cluster, folder, env.redis.url).start()
        try:
            await ready(env)
            agent = env.cluster.token(f"{NS}/{AGENT}")
            direct: list[float] = []
            through: list[float] = []
            async with session(url, upstream_token) as d, session(gateway.url, agent) as g:
                for warm in range(5):  # connections, sessions and caches, as in steady use
                    await d.call_tool(TOOL, {"account": f"warm-{warm}"})
                    await g.call_tool(f"bank__{TOOL}", {"account": f"warm-{warm}"})
                steps_before = gateway_steps.scrape(gateway.port)
                done, piece = 0, 20
                while done < count:
                    n = min(piece, count - done)
                    direct += await paced(d, TOOL, n, rate, f"d{done}")
                    through += await paced(g, f"bank__{TOOL}", n, rate, f"g{done}")
                    done += n
                    log(f"  {done}/{count} calls each")
            steps = gateway_steps.breakdown(steps_before, gateway_steps.scrape(gateway.port))
            calls = (folder / "calls.jsonl").read_text().splitlines()
            seen = sum(1 for line in calls if '"bench-g' in line)
        finally:
            gateway.stop()
    d_stats, g_stats = stats(direct, 1000), stats(through, 1000)
    overhead = g_stats["median"] - d_stats["median"]
    return {
        "rate": rate,
        "count": count,
        "direct": d_stats,
        "gateway": g_stats,
        "median_overhead_ms": round(overhead, 2),
        "median_ratio": round(g_stats["median"] / d_stats["median"], 2),
        "p99_ratio": round(g_stats["p99"] / d_stats["p99"], 2),
        "upstream_calls_through_gateway": seen,
        "steps": steps,
        "goal_met": g_stats["median"] <= GOAL_RATIO * d_stats["median"]
        and overhead < GOAL_OVERHEAD_MS,
    }


def rows(g: dict[str, Any], goal: Callable[[bool | None], str]) -> list[dict[str, Any]]:
    rate = f"{g['rate']:g}/s"
    d, through = g["direct"], g["gateway"]
    return [
        {"figure": f"MCP tier 1 tools/call median (ms) @ {rate}", "handoff": through["median"],
         "baseline": d["median"], "vs": "same call direct to upstream", "ratio": g["median_ratio"],
         "goal": f"ratio <= {GOAL_RATIO:g}, +{GOAL_OVERHEAD_MS:g} ms",
         "met": goal(g["goal_met"])},
        {"figure": f"MCP tier 1 tools/call p99 (ms) @ {rate}", "handoff": through["p99"],
         "baseline": d["p99"], "vs": "same call direct to upstream", "ratio": g["p99_ratio"]},
        *gateway_steps.rows(g.get("steps") or {}),
    ]  # fmt: skip

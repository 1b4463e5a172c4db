"""A history of decided requests: what the operator keeps per decided request, how soon it is
ready after a start, and what each decided request costs in etcd.

1. The operator decides one tier 1 request; its status, as the operator wrote it, is the template.
   The operator stops.
2. ``count`` more tier 1 requests are filed by the agent and their status patched to that
   template with the operator's credentials (as the floor of ``decisions.py`` does): a history the
   operator decided, written at the API server's pace and not the operator's.
3. ready: the operator starts (a first time, which publishes the whole history to Redis, then
   again: the figure); the time from its start until a request filed as soon as it is healthy
   has been decided. That request comes after the whole history in the
   operator's first listing, so it measures the pass over the history. The baseline is a client
   listing the history (500 a page), the least a start can cost.
4. memory: the operator's resident set once it is ready and has settled, beside the same operator
   idle on an empty namespace.
5. bytes: the stored JSON of a request the operator decided, beside its spec alone, its status
   and its ``metadata.managedFields`` (the API server keeps custom resources as JSON in etcd).
"""

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from environment import BenchEnvironment, operator_rss_mb
from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path
from profiler import Profiler

NS = "bench-history"
AGENT = "history-agent"
COUNT = 10_000
CLIENTS = 32
# The probe is filed once the operator is healthy, which is before the operator's own listing of
# the requests has ended (it starts after the re-arm), so the probe is in that listing, which the
# API server returns in name order, or comes through the watch after it. Named to sort after the
# history ("h-..."), it is handed over last; named like the history, it came at a random place
# in the pass and the figure measured a random share of it.
PROBE = "z-probe-"
POLICY = {
    "agents": {"serviceAccounts": [AGENT]},
    "defaultTier": 4,
    "rules": [{"name": "reads", "actions": ["bench.read"], "tier": 1}],
}


def _request(i: int, prefix: str = "h-") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ActionRequest",
            "metadata": {"generateName": prefix, "namespace": NS},
            "spec": {"agent": AGENT, "action": "bench.read", "target": "db:orders",
                     "parameters": {"limit": 10, "i": i}, "summary": f"read orders {i}",
                     "reasoning": "benchmark", "blastRadius": "none: a read"}}  # fmt: skip


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def stored_bytes(obj: dict[str, Any]) -> dict[str, int]:
    """A request's JSON as the API server stores it, split into its parts: its spec, its status,
    its ``metadata.managedFields`` (the entry of the agent's create, and that of the operator's
    status writes), the rest of its metadata, and the least object with this spec (no status, no
    managedFields)."""
    meta = obj["metadata"]
    managed = meta.get("managedFields") or []
    rest = {k: v for k, v in meta.items() if k != "managedFields"}
    least = {k: v for k, v in obj.items() if k != "status"} | {"metadata": rest}
    return {
        "object": _size(obj),
        "spec": _size(obj.get("spec") or {}),
        "status": _size(obj.get("status") or {}),
        "managed_fields": _size(managed),
        "managed_by_create": sum(_size(e) for e in managed if not e.get("subresource")),
        "managed_by_status": sum(_size(e) for e in managed if e.get("subresource") == "status"),
        "metadata": _size(rest),
        "least": _size(least),
    }


async def _decided(api: KubeApi, path: str, name: str, limit: float) -> dict[str, Any] | None:
    found: dict[str, Any] = {}

    async def poll() -> None:
        while True:
            obj = await api.get(f"{path}/{name}")
            if (obj.get("status") or {}).get("decision"):
                found["obj"] = obj
                return
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), limit)
    except TimeoutError:
        return None
    return found["obj"]


async def _fill(env: BenchEnvironment, count: int, status: dict[str, Any]) -> int:
    """File ``count`` requests and write ``status`` on each, as the operator would; the retries."""
    agent, writer = env.api(f"{NS}/{AGENT}"), env.api("operator")
    path = resource_path(GROUP, VERSION, REQUESTS, NS)
    retries = 0

    async def client(queue: Iterator[int]) -> None:
        nonlocal retries
        for i in queue:
            for _ in range(5):
                try:
                    created = await agent.create(path, _request(i))
                    name = created["metadata"]["name"]
                    await writer.merge_patch(f"{path}/{name}/status", {"status": status})
                    break
                except KubeError:
                    retries += 1
                    await asyncio.sleep(0.5)

    queue = iter(range(count))
    await asyncio.gather(*(client(queue) for _ in range(CLIENTS)))
    await agent.close()
    await writer.close()
    return retries


async def measure(
    env: BenchEnvironment, list_seconds: Callable[[BenchEnvironment, str], Any], *,
    count: int = COUNT, log: Callable[[str], None] = print, profiler: Profiler | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Expects ``env`` with the namespace made and no operator running. With ``profiler``, the
    restart is sampled by py-spy from the process's first moment until the probe is decided
    (``history-restart.txt``)."""
    operator = env.start_operator([NS])
    await env.apply_policy(NS, "bench-history", POLICY)
    await asyncio.sleep(2)
    idle_rss = operator_rss_mb(operator)
    path = resource_path(GROUP, VERSION, REQUESTS, NS)
    async with env.api(f"{NS}/{AGENT}") as agent:
        created = await agent.create(path, _request(-1))
        decided = await _decided(agent, path, created["metadata"]["name"], 60)
    assert decided is not None, "the operator did not decide the template request"
    bytes_decided = stored_bytes(decided)
    operator.stop()

    started = time.perf_counter()
    retries = await _fill(env, count, decided["status"])
    log(f"  filed and decided {count} in {time.perf_counter() - started:.0f}s ({retries} retries)")

    # The first start publishes every decision (the history was written around the operator,
    # so Redis has none of it); the second is a restart over a history already published.
    first = await _start(env, operator, count)
    operator.stop()
    again = await _start(env, operator, count + 1, profiler)
    listing = await list_seconds(env, NS)
    log(
        f"  ready {again['ready']}s after a restart, {first['ready']}s after the first start (healthy after {again['healthy']}s; a client lists them in {listing:.2f}s); RSS {again['rss_settled']:.0f} MB (idle {idle_rss:.0f} MB)"
    )
    ready, rss_settled = again["ready"], again["rss_settled"]
    return {
        "decided": count + 1,  # and the probes
        "ready_seconds": ready,
        "healthy_seconds": again["healthy"],
        "first_start": first,
        "list_seconds": round(listing, 2),
        "idle_rss_mb": round(idle_rss, 1),
        "rss_mb_ready": again["rss_ready"],
        "rss_mb": rss_settled,
        "bytes_per_decided_request": round((rss_settled - idle_rss) * 1024 * 1024 / (count + 1)),
        "stored_bytes": bytes_decided,
        "fill_retries": retries,
    }


async def _start(
    env: BenchEnvironment, operator: Any, index: int, profiler: Profiler | None = None
) -> dict[str, Any]:
    """Start the operator; how long until a request filed once it is healthy is decided, and
    its memory then and once settled (the first listing's burst given back)."""
    path = resource_path(GROUP, VERSION, REQUESTS, NS)
    started = time.perf_counter()
    starting = asyncio.create_task(asyncio.to_thread(operator.start))
    if profiler is not None:  # from the process's first moment
        # operator.start spawns the process in a thread and waits there until it is healthy:
        # its Popen, set from that thread, is what says the pid, so it is polled.
        while operator.process is None and not starting.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if operator.process is not None:
            profiler.cpu(operator.process.pid, "history-restart")
    await starting
    healthy = time.perf_counter() - started
    async with env.api(f"{NS}/{AGENT}") as agent:
        probe = await agent.create(path, _request(index, PROBE))
        done = await _decided(agent, path, probe["metadata"]["name"], 600)
    ready = time.perf_counter() - started if done is not None else None
    if profiler is not None:
        profiler.stop()
    await asyncio.sleep(2)
    rss_ready = operator_rss_mb(operator)
    await asyncio.sleep(8)
    return {"ready": None if ready is None else round(ready, 2), "healthy": round(healthy, 2),
            "rss_ready": round(rss_ready, 1), "rss_settled": round(operator_rss_mb(operator), 1)}  # fmt: skip

"""Tier 1: from an agent's propose() to the agent holding its decision and state (resume).

Runs against a running `handoff dev up` (make bench starts one). Sequential proposals, so each
figure is one request's latency, not queueing. The baseline, measured in the same run on the
same control plane and Redis, is the floor of that path without Handoff: the same client doing
the two API writes (create, then a status patch as the operator would) and one Redis stream
append and read.
"""

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as redis_asyncio
import yaml
from handoff.adapters.kube import Credentials, KubeApi, resource_path
from handoff.sdk import Agent

ROOT = Path(__file__).resolve().parents[1]
NS = "agents"
AGENT = "bench-agent"  # its own agent: no other policy may raise its tier
POLICY = {
    "apiVersion": "handoff.dev/v1alpha1",
    "kind": "AgentActionPolicy",
    "metadata": {"name": "bench-latency", "namespace": NS},
    "spec": {
        "agents": {"serviceAccounts": [AGENT]},
        "rules": [{"name": "reads", "actions": ["bench.read"], "tier": 1}],
        "defaultTier": 1,
    },
}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def handoff_path(kubeconfig: str, count: int) -> list[float]:
    latencies = []
    async with Agent(NS, AGENT, kubeconfig=kubeconfig, context=AGENT, consumer="bench") as agent:
        stream = agent.decisions(block=10)
        for i in range(count):
            started = time.perf_counter()
            ticket = await agent.propose(
                "bench.read", summary=f"bench {i}", state={"i": i}, quick_wait=0
            )
            decision = await anext(stream)
            while decision.name != ticket.name:  # leftovers of an earlier run
                decision = await anext(stream)
            latencies.append(time.perf_counter() - started)
            assert decision.state == {"i": i}
        await stream.aclose()
    return latencies


async def floor_path(kubeconfig: str, redis_url: str, count: int) -> list[float]:
    api = KubeApi(Credentials.load(kubeconfig, "admin"))
    # The status write is made as the operator would make it (admission lets only it).
    writer = KubeApi(Credentials.load(str(Path(kubeconfig).parent / "operator.kubeconfig")))
    client = redis_asyncio.from_url(redis_url)
    stream = f"bench:floor:{uuid.uuid4().hex}"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    path = resource_path("handoff.dev", "v1alpha1", "actionrequests", NS)
    latencies = []
    try:
        for i in range(count):
            started = time.perf_counter()
            body = {
                "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                "metadata": {"generateName": "floor-", "namespace": NS},
                "spec": {"agent": "floor-agent", "action": "bench.floor", "summary": f"floor {i}"},
            }  # fmt: skip
            created = await api.create(path, body)
            status = {"status": {"phase": "Approved", "tier": 1}}
            await writer.merge_patch(f"{path}/{created['metadata']['name']}/status", status)
            await client.xadd(stream, {"name": created["metadata"]["name"]})
            await client.xreadgroup("g", "c", {stream: ">"}, count=1, block=1000)
            latencies.append(time.perf_counter() - started)
    finally:
        await client.delete(stream)
        await client.aclose()
        await api.close()
        await writer.close()
    return latencies


def summary(name: str, values: list[float]) -> dict[str, Any]:
    return {
        "path": name,
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--output", default=str(ROOT / ".handoff" / "bench-resume-latency.json"))
    args = parser.parse_args()
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".handoff/dev/env").read_text().splitlines()
        if "=" in line
    )
    kubeconfig = env["KUBECONFIG"]
    api = KubeApi(Credentials.load(kubeconfig, "admin"))
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": AGENT, "namespace": NS},
    }
    await api.apply(account, manager="bench")
    await api.apply(POLICY, manager="bench")
    token = await api.create(
        resource_path("", "v1", "serviceaccounts", NS, AGENT) + "/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    await api.close()
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]
    agent_config = {
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": AGENT, "user": {"token": token["status"]["token"]}}],
        "contexts": [{"name": AGENT, "context": {"cluster": cluster["name"], "user": AGENT}}],
        "current-context": AGENT,
    }  # fmt: skip
    agent_kubeconfig = ROOT / ".handoff" / "bench-agent.kubeconfig"
    agent_kubeconfig.write_text(yaml.safe_dump(agent_config))
    await asyncio.sleep(2)
    floor = summary(
        "floor: create + status patch + XADD + XREADGROUP",
        await floor_path(kubeconfig, env["REDIS_URL"], args.count),
    )
    handoff = summary(
        "handoff: propose() -> decision in decisions()",
        await handoff_path(str(agent_kubeconfig), args.count),
    )
    rows = [floor, handoff]
    print(f"{'path':52} {'n':>5} {'median ms':>10} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['path']:52} {row['n']:>5} {row['median_ms']:>10} {row['p99_ms']:>8}")
    ratio = handoff["median_ms"] / floor["median_ms"]
    print(f"ratio of medians (handoff / floor): {ratio:.2f}")
    Path(args.output).write_text(
        json.dumps({"rows": rows, "median_ratio": round(ratio, 2)}, indent=2)
    )


if __name__ == "__main__":
    asyncio.run(main())

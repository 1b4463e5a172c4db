"""`make bench`: every figure of issue #9 beside a baseline measured in the same run.

1. classification: Handoff's compiled policy beside cedarpy and OPA (same answers checked);
2. tier 1 decision latency at 10/s, 50/s and the highest sustained rate, beside the two-write floor;
3. sustained throughput as a share of the floor's;
4. 10,000 pending tier 4 requests: memory, re-arming after a restart, expiry lateness;
5. a tier-1 MCP ``tools/call`` through the gateway beside the same call direct to the upstream.

Runs its own control plane, Redis and operator in .handoff/bench; prints a table and writes
.handoff/bench/results.json. Goals are checked against what was measured, never assumed.
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import classification
import decisions
import gateway
import scale
from common import ratio, table
from environment import FOLDER, BenchEnvironment, operator_rss_mb
from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import resource_path


def log(text: str) -> None:
    print(text, flush=True)


async def list_seconds(env: BenchEnvironment, namespace: str) -> float:
    """The floor of re-arming: a client listing every request of the namespace (500 a page)."""
    started = time.perf_counter()
    async with env.api("operator") as api:
        path = resource_path(GROUP, VERSION, REQUESTS, namespace)
        token = ""
        while True:
            page = await api.get(f"{path}?limit=500" + (f"&continue={token}" if token else ""))
            token = page["metadata"].get("continue") or ""
            if not token:
                break
    return time.perf_counter() - started


async def cluster_figures(args: argparse.Namespace) -> dict[str, Any]:
    env = BenchEnvironment(FOLDER).start()
    try:
        env.namespace(decisions.NS, (decisions.AGENT,))
        env.namespace(decisions.FLOOR_NS, (decisions.FLOOR_AGENT,))
        env.namespace(scale.NS, (scale.AGENT,))
        operator = env.start_operator([decisions.NS])
        await env.apply_policy(decisions.NS, "bench", decisions.POLICY)
        await env.grant_create(decisions.FLOOR_NS, decisions.FLOOR_AGENT)
        log("decision latency and throughput")
        figures = await decisions.measure(env, slice_seconds=args.slice_seconds,
                                          confirm_seconds=args.confirm_seconds, log=log)  # fmt: skip
        operator.stop()
        if args.only == "decisions":
            return figures
        log("10,000 pending requests")
        operator = env.start_operator([scale.NS])
        await env.apply_policy(scale.NS, "bench-scale", scale.policy())
        await asyncio.sleep(2)
        idle_rss = operator_rss_mb(operator)
        figures["scale"] = await scale.measure(env, log=log)
        figures["scale"]["idle_rss_mb"] = round(idle_rss, 1)
        figures["scale"]["list_seconds"] = round(await list_seconds(env, scale.NS), 2)
        return figures
    finally:
        env.stop()


async def gateway_figures(args: argparse.Namespace) -> dict[str, Any]:
    env = BenchEnvironment(FOLDER).start()
    try:
        env.start_operator([gateway.NS])
        log(f"MCP gateway: tier-1 tools/call at {args.gateway_rate:g}/s, direct and through it")
        return await gateway.measure(env, count=args.gateway_calls, rate=args.gateway_rate, log=log)
    finally:
        env.stop()


def goal(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "MISSED")


def classification_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    h, cedar, opa = c["engines"]["handoff"], c["engines"]["cedar"], c["engines"].get("opa")
    add = out.append
    add({"figure": "classify p99 (us), 100 rules x 10k", "handoff": h["p99"], "baseline": cedar["p99"],
         "vs": "cedarpy", "ratio": c["p99_ratio_vs_cedar"], "goal": "ratio <= 1.0",
         "met": goal(c["p99_ratio_vs_cedar"] <= 1.0)})  # fmt: skip
    add({"figure": "classify median (us)", "handoff": h["median"], "baseline": cedar["median"],
         "vs": "cedarpy", "ratio": c["median_ratio_vs_cedar"]})  # fmt: skip
    if opa:
        add({"figure": "classify p99 (us)", "handoff": h["p99"], "baseline": opa["p99"], "vs": "OPA (Go, in-process)",
             "ratio": ratio(h["p99"], opa["p99"])})  # fmt: skip
        add({"figure": "classify median (us)", "handoff": h["median"], "baseline": opa["median"],
             "vs": "OPA (Go, in-process)", "ratio": ratio(h["median"], opa["median"])})  # fmt: skip
    return out


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    add = out.append
    if "classification" in results:
        out += classification_rows(results["classification"])
    if "latency" in results:
        for key, row in results["latency"].items():
            rate = f"{row['rate']:g}/s" if key != "max" else f"{row['rate']:g}/s (max)"
            hand, floor = row["handoff"], row["floor"]
            add({"figure": f"tier 1 latency median (ms) @ {rate}", "handoff": hand["median_ms"],
                 "baseline": floor["median_ms"], "vs": "floor: create + patch", "ratio": row["median_ratio"],
                 "goal": "ratio <= 3" if key == "50" else None,
                 "met": goal(row["median_ratio"] is not None and row["median_ratio"] <= 3) if key == "50" else "-"})  # fmt: skip
            add({"figure": f"tier 1 latency p99 (ms) @ {rate}", "handoff": hand["p99_ms"],
                 "baseline": floor["p99_ms"], "vs": "floor: create + patch", "ratio": row["p99_ratio"],
                 "goal": "< 100 ms" if key == "50" else None,
                 "met": goal(hand["p99_ms"] is not None and hand["p99_ms"] < 100) if key == "50" else "-"})  # fmt: skip
        t = results["throughput"]
        add({"figure": "sustained tier 1 rate (/s), p99 < 250 ms", "handoff": t["handoff_rate"],
             "baseline": t["floor_rate"], "vs": "floor's sustained rate", "ratio": t["share_of_floor"],
             "goal": "share >= 0.5", "met": goal((t["share_of_floor"] or 0) >= 0.5)})  # fmt: skip
    if "scale" in results:
        s = results["scale"]
        add({"figure": "operator RSS (MB), 10k pending", "handoff": s["rss_mb"], "baseline": s["idle_rss_mb"],
             "vs": "same operator, idle", "ratio": ratio(s["rss_mb"], s["idle_rss_mb"]),
             "goal": "< 300 MB", "met": goal(s["rss_mb"] < 300)})  # fmt: skip
        add({"figure": "re-arm 10k deadlines after restart (s)", "handoff": s["rearm_seconds"],
             "baseline": s["list_seconds"], "vs": "a client listing them", "ratio": ratio(s["rearm_seconds"], s["list_seconds"]),
             "goal": "< 30 s", "met": goal(s["rearm_seconds"] is not None and s["rearm_seconds"] < 30)})  # fmt: skip
        late = s["lateness_ms"]
        complete = s["expired"] == s["expiries_expected"]
        add({"figure": f"expiry lateness p99 (ms), {s['expired']}/{s['expiries_expected']} expired",
             "handoff": late["p99"], "baseline": None, "vs": "the deadline itself",
             "goal": "< 1000 ms", "met": goal(complete and late["p99"] is not None and late["p99"] < 1000)})  # fmt: skip
        add({"figure": "expiry lateness median (ms)", "handoff": late["median"]})
    if "gateway" in results:
        out += gateway.rows(results["gateway"], goal)
    return out


COLUMNS = [("figure", "figure"), ("handoff", "Handoff"), ("baseline", "baseline"), ("vs", "baseline is"),
           ("ratio", "ratio"), ("goal", "goal"), ("met", "")]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=str(FOLDER / "results.json"))
    parser.add_argument(
        "--only", choices=["classification", "cluster", "decisions", "gateway"], default=None
    )
    parser.add_argument("--slice-seconds", type=float, default=6)
    parser.add_argument("--confirm-seconds", type=float, default=60)
    parser.add_argument("--gateway-calls", type=int, default=200, help="calls each way")
    parser.add_argument("--gateway-rate", type=float, default=10.0, help="calls per second")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}}  # fmt: skip
    if args.only in (None, "classification"):
        log("classification: 100 rules, 10,000 requests")
        results["classification"] = classification.measure()
        results["classification_growth"] = classification.growth()
    if args.only in (None, "cluster", "decisions"):
        results.update(asyncio.run(cluster_figures(args)))
    if args.only in (None, "gateway"):
        results["gateway"] = asyncio.run(gateway_figures(args))
    results["seconds"] = round(time.perf_counter() - started, 1)
    # Other work on the machine moves every absolute figure: record how busy it was.
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["table"] = rows(results)
    print()
    print(table(results["table"], COLUMNS))
    growth = results.get("classification_growth")
    if growth:
        print("\nclassification cost by rule count (us, median / p99):")
        for row in growth:
            print(f"  {row['rules']:>5} rules: Handoff {row['handoff']['median']} / {row['handoff']['p99']}"
                  f"   cedarpy {row['cedar']['median']} / {row['cedar']['p99']}")  # fmt: skip
    ladder = results.get("ladder")
    if ladder:
        print("\ntier 1 latency by request rate (ms, median / p99; * = sustained, p99 < 250 ms):")
        for step in ladder:
            f, h = step["floor"], step["handoff"]
            print(f"  {step['rate']:>5}/s: floor {f['median_ms']} / {f['p99_ms']}{' *' if f['sustained'] else ''}"
                  f"   Handoff {h['median_ms']} / {h['p99_ms']}{' *' if h['sustained'] else ''}")  # fmt: skip
    machine = results["machine"]
    print(
        f"\nload average (1, 5, 15 min) at start {machine['load_average_at_start']}, at end "
        f"{machine['load_average_at_end']} on {machine['cpus']} CPUs"
    )
    print(f"{results['seconds']:.0f} s in all; results in {args.output}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

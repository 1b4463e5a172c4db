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
import history
import scale
from common import CLUSTER, parts, ratio, table
from environment import FOLDER, BenchEnvironment, operator_rss_mb
from goals import GOAL_COLUMNS, goals
from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import resource_path
from profiler import Profiler, operator_env


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
    env = BenchEnvironment(Path(args.folder)).start()
    if args.operator_from:  # another operator's code, e.g. `git archive` of an earlier commit
        env.operator_env["PYTHONPATH"] = str(Path(args.operator_from).resolve())
    profiler = None
    if args.profile:
        profiler = Profiler(Path(args.profile))
        env.operator_env = operator_env(Path(args.profile)) | {
            "PYTHONPATH": os.pathsep.join(
                p for p in (operator_env(Path(args.profile))["PYTHONPATH"],
                            env.operator_env.get("PYTHONPATH")) if p
            )
        }  # fmt: skip
    for setting in args.operator_env:  # e.g. PYTHONMALLOC=malloc
        key, _, value = setting.partition("=")
        env.operator_env[key] = value
    try:
        env.namespace(decisions.NS, (decisions.AGENT,))
        env.namespace(decisions.FLOOR_NS, (decisions.FLOOR_AGENT,))
        env.namespace(scale.NS, (scale.AGENT,))
        env.namespace(history.NS, (history.AGENT,))
        figures: dict[str, Any] = {}
        if "decisions" in parts(args.only):
            operator = env.start_operator([decisions.NS])
            await env.apply_policy(decisions.NS, "bench", decisions.POLICY)
            await env.grant_create(decisions.FLOOR_NS, decisions.FLOOR_AGENT)
            log("decision latency and throughput")
            figures = await decisions.measure(env, slice_seconds=args.slice_seconds,
                                              confirm_seconds=args.confirm_seconds,
                                              cpu_seconds=args.cpu_seconds, profiler=profiler,
                                              cpu_only=args.cpu_only, log=log)  # fmt: skip
            operator.stop()
        if "scale" in parts(args.only):
            log(f"{args.pending:,} pending requests")
            operator = env.start_operator([scale.NS])
            await env.apply_policy(scale.NS, "bench-scale", scale.policy())
            await asyncio.sleep(2)
            idle_rss = operator_rss_mb(operator)
            figures["scale"] = await scale.measure(env, log=log, total=args.pending,
                                                   short=args.short or args.pending // 5, profiler=profiler)  # fmt: skip
            figures["scale"]["idle_rss_mb"] = round(idle_rss, 1)
            grown = figures["scale"]["rss_mb"] - idle_rss
            figures["scale"]["bytes_per_pending"] = round(grown * 1024 * 1024 / args.pending)
            figures["scale"]["list_seconds"] = round(await list_seconds(env, scale.NS), 2)
            operator.stop()
        if "history" in parts(args.only):
            log(f"a history of {args.history:,} decided requests")
            figures["history"] = await history.measure(
                env, list_seconds, count=args.history, log=log, profiler=profiler
            )
        return figures
    finally:
        env.stop()


async def gateway_figures(args: argparse.Namespace) -> dict[str, Any]:
    env = BenchEnvironment(Path(args.folder)).start()
    try:
        env.start_operator([gateway.NS])
        log(f"MCP gateway: tier-1 tools/call at {args.gateway_rate:g}/s, direct and through it")
        return await gateway.measure(env, count=args.gateway_calls, rate=args.gateway_rate, log=log)
    finally:
        env.stop()


def goal(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "MISSED")


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "classification" in results:
        out += _classification_rows(results["classification"])
    if "cpu" in results:
        out += _cpu_rows(results["cpu"])
    if "latency" in results:
        out += _latency_rows(results)
    if "scale" in results:
        out += _scale_rows(results["scale"])
    if "history" in results:
        out += _history_rows(results["history"])
    if "gateway" in results:
        out += gateway.rows(results["gateway"], goal)
    return out


def _classification_rows(c: dict[str, Any]) -> list[dict[str, Any]]:
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


def _cpu_rows(cpu: dict[str, Any]) -> list[dict[str, Any]]:
    """CPU per tier 1 request (idle taken off): the operator's has no baseline (the floor has
    no operator); the API server's and etcd's beside what the floor's two writes cost them."""
    h, f = cpu["handoff"], cpu["floor"]
    rate = f"{cpu['rate']:g}/s"
    return [
        {"figure": f"operator CPU (ms) per tier 1 request @ {rate}", "handoff": h["operator_ms"]},
        {"figure": "  kube-apiserver CPU (ms) per request", "handoff": h["apiserver_ms"],
         "baseline": f["apiserver_ms"], "vs": "floor: create + patch",
         "ratio": ratio(h["apiserver_ms"], f["apiserver_ms"])},
        {"figure": "  etcd CPU (ms) per request", "handoff": h["etcd_ms"],
         "baseline": f["etcd_ms"], "vs": "floor: create + patch",
         "ratio": ratio(h["etcd_ms"], f["etcd_ms"])},
        {"figure": "  writes (watch events) per request", "handoff": h["writes_per_request"],
         "baseline": 2, "vs": "floor: create + patch"},
        {"figure": "  Events posted per request", "handoff": h["events_per_request"]},
    ]  # fmt: skip


def _latency_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    add = out.append
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
        if "floor_event" in row:  # the same floor posting the decision's Event too
            add({"figure": f"  p99 (ms) @ {rate}, floor with an Event per request", "handoff": hand["p99_ms"],
                 "baseline": row["floor_event"]["p99_ms"], "vs": "floor: create + patch + Event",
                 "ratio": row["p99_ratio_event"], "goal": None, "met": "-"})  # fmt: skip
    t = results["throughput"]
    add({"figure": "sustained tier 1 rate (/s), p99 < 250 ms", "handoff": t["handoff_rate"],
         "baseline": t["floor_rate"], "vs": "floor's sustained rate", "ratio": t["share_of_floor"],
         "goal": "share >= 0.5", "met": goal((t["share_of_floor"] or 0) >= 0.5)})  # fmt: skip
    return out


def _scale_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    add = out.append
    pending = f"{s['pending'] // 1000}k"
    rearm = ratio(s["rearm_seconds"], s["list_seconds"])
    add({"figure": f"operator RSS (MB), {pending} pending", "handoff": s["rss_mb"], "baseline": s["idle_rss_mb"],
         "vs": "same operator, idle", "ratio": ratio(s["rss_mb"], s["idle_rss_mb"]),
         "goal": "<= 150 MB", "met": goal(s["rss_mb"] <= 150)})  # fmt: skip
    add({"figure": "  bytes per pending request", "handoff": s["bytes_per_pending"]})
    add({"figure": f"re-arm {pending} deadlines after restart (s)", "handoff": s["rearm_seconds"],
         "baseline": s["list_seconds"], "vs": "a client listing them", "ratio": rearm,
         "goal": "ratio <= 2", "met": goal(rearm is not None and rearm <= 2)})  # fmt: skip
    late = s["lateness_ms"]
    complete = s["expired"] == s["expiries_expected"]
    floor = s.get("floor_lateness_ms") or {}
    add({"figure": f"expiry lateness p99 (ms), {s['expired']}/{s['expiries_expected']} expired",
         "handoff": late["p99"], "baseline": floor.get("p99"), "vs": "the same waves, written by a client",
         "ratio": ratio(late["p99"], floor.get("p99")),
         "goal": "< 250 ms", "met": goal(complete and late["p99"] is not None and late["p99"] < 250)})  # fmt: skip
    add({"figure": "expiry lateness median (ms)", "handoff": late["median"], "baseline": floor.get("median"),
         "ratio": ratio(late["median"], floor.get("median"))})  # fmt: skip
    waves = s.get("waves") or {}
    add({"figure": "  deadlines falling at once: largest, median", "handoff": waves.get("largest"),
         "baseline": waves.get("median")})  # fmt: skip
    return out


def _history_rows(h: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    add = out.append
    count = f"{h['decided'] // 1000}k"
    ready = ratio(h["ready_seconds"], h["list_seconds"])
    add({"figure": f"ready after a start (s), {count} decided", "handoff": h["ready_seconds"],
         "baseline": h["list_seconds"], "vs": "a client listing them", "ratio": ready,
         "goal": "ratio <= 3", "met": goal(ready is not None and ready <= 3)})  # fmt: skip
    add({"figure": f"operator RSS (MB), {count} decided", "handoff": h["rss_mb"], "baseline": h["idle_rss_mb"],
         "vs": "same operator, idle", "ratio": ratio(h["rss_mb"], h["idle_rss_mb"]),
         "goal": "<= 250 MB", "met": goal(h["rss_mb"] <= 250)})  # fmt: skip
    add({"figure": "  bytes per decided request (RSS)", "handoff": h["bytes_per_decided_request"]})
    b = h["stored_bytes"]
    add({"figure": "stored bytes, decided tier 1 request", "handoff": b["object"], "baseline": b["spec"],
         "vs": "its spec alone", "ratio": ratio(b["object"], b["spec"])})  # fmt: skip
    add({"figure": "  of which status / managedFields", "handoff": b["status"],
         "baseline": b["managed_fields"]})  # fmt: skip
    if "least" in b:
        add({"figure": "  least object: metadata + spec", "handoff": b["least"],
             "baseline": b["spec"], "vs": "its spec alone", "ratio": ratio(b["least"], b["spec"])})  # fmt: skip
    return out


COLUMNS = [("figure", "figure"), ("handoff", "Handoff"), ("baseline", "baseline"), ("vs", "baseline is"),
           ("ratio", "ratio"), ("goal", "goal"), ("met", "")]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=str(FOLDER / "results.json"))
    parser.add_argument(
        "--folder",
        default=str(FOLDER),
        help="where its control plane runs: another one runs a second bench beside",
    )
    parser.add_argument(
        "--only",
        default=None,
        choices=["classification", "cluster", "decisions", "scale", "history", "gateway"],
    )
    parser.add_argument("--pending", type=int, default=scale.TOTAL, help="smaller while iterating")
    parser.add_argument("--short", type=int, default=None,
                        help="of those, expiring during the run (default a fifth)")  # fmt: skip
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="py-spy profiles of the operator (decisions: while its CPU is measured; scale: "
        "with tracemalloc; history: its restart until the probe is decided), into DIR",
    )
    parser.add_argument(
        "--operator-from",
        default=None,
        metavar="DIR",
        help="run the operator from DIR (an earlier commit's operator/ folder)",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the operator (e.g. PYTHONMALLOC=malloc)",
    )
    parser.add_argument("--history", type=int, default=history.COUNT, help="decided requests")
    parser.add_argument("--slice-seconds", type=float, default=6)
    parser.add_argument("--confirm-seconds", type=float, default=60)
    parser.add_argument(
        "--cpu-seconds",
        type=float,
        default=15,
        help="seconds of tier 1 requests (20/s) whose CPU is measured",
    )
    parser.add_argument("--cpu-only", action="store_true",
                        help="decisions: the CPU per request only, no latency rows")  # fmt: skip
    parser.add_argument("--gateway-calls", type=int, default=200, help="calls each way")
    parser.add_argument("--gateway-rate", type=float, default=10.0, help="calls per second")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}}  # fmt: skip
    if "classification" in parts(args.only):
        log("classification: 100 rules, 10,000 requests")
        results["classification"] = classification.measure()
        results["classification_growth"] = classification.growth()
    if set(CLUSTER) & set(parts(args.only)):
        results.update(asyncio.run(cluster_figures(args)))
    if "gateway" in parts(args.only):
        results["gateway"] = asyncio.run(gateway_figures(args))
    results["seconds"] = round(time.perf_counter() - started, 1)
    # Other work on the machine moves every absolute figure: record how busy it was.
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["table"] = rows(results)
    print()
    print(table(results["table"], COLUMNS))
    results["goals"] = goals(results)
    print("\ngoals (issues #9 and #21):")
    print(table(results["goals"], GOAL_COLUMNS))
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

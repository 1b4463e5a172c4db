"""Tier 1 decision latency and sustained throughput, beside the two-write floor.

Handoff: the agent creates an ActionRequest (as its own ServiceAccount) and watches its namespace;
the latency of a request is from its scheduled send time to the watch event that shows
``status.decision.outcome == Approved`` (the operator classified, decided and wrote it).

Floor: the same client on the same control plane creates a request (as an agent with no policy,
in a namespace the operator does not watch) and patches its status to Approved itself, with the
operator's credentials, as the operator would: two API writes and no operator. Its latency is
from the scheduled send time to the patch's answer.

Load is open-loop: requests are sent on a fixed schedule whatever the answers, and latency counts
from the scheduled time, so a backlog shows up in the figures (no coordinated omission).
"""

import asyncio
import functools
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import RequestWatch, ratio, stats, until
from cpu import CpuMeter, per_request
from environment import BenchEnvironment
from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path
from handoff.domain.timefmt import parse_time
from profiler import Profiler

NS = "bench-decisions"
AGENT = "bench-agent"
FLOOR_NS = "bench-floor"
FLOOR_AGENT = "floor-agent"
P99_LIMIT_MS = 250.0
CPU_RATE = 20  # requests a second while the CPU per request is measured: every path keeps up
IDLE_SECONDS = 5.0  # what each process spends idle, measured before, is taken off (10 ms ticks)
SETTLE_SECONDS = 2.0  # after the last answer: the operator's Events and the echoes
CPU_GRACE = 60.0  # seconds to wait for the last decisions while CPU is measured
GRACE = 10.0  # seconds after the last send to wait for stragglers; missing ones count as lost

POLICY = {
    "agents": {"serviceAccounts": [AGENT]},
    "defaultTier": 4,
    "rules": [{"name": "reads", "actions": ["bench.read", "bench.list"], "tier": 1}],
}


def _request(namespace: str, agent: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ActionRequest",
        "metadata": {"generateName": "b-", "namespace": namespace},
        "spec": {"agent": agent, "action": "bench.read", "target": "db:orders",
                 "parameters": {"limit": 10, "i": i}, "summary": f"read orders {i}",
                 "reasoning": "benchmark", "blastRadius": "none: a read"},
    }  # fmt: skip


def _floor_event(created: dict[str, Any]) -> dict[str, Any]:
    """The Event the operator posts for a tier 1 decision (controller/events.py), for a floor
    request."""
    meta, now = created["metadata"], created["metadata"]["creationTimestamp"]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ActionRequest",
                           "name": meta["name"], "namespace": meta["namespace"],
                           "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
        "reason": "AutoApproved", "message": "rule reads matched bench.read", "type": "Normal",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "source": {"component": "handoff-operator"},
        "reportingComponent": "handoff.dev/operator", "reportingInstance": "bench-floor",
    }  # fmt: skip


def _floor_status(now: str) -> dict[str, Any]:
    """What the operator writes for a tier 1 request, written by the floor client instead."""
    return {"status": {
        "phase": "Approved", "tier": 1, "oversight": "HOOTL", "policy": "floor", "rule": "reads",
        "decision": {"outcome": "Approved", "reason": "AutoApproved", "by": [], "at": now,
                     "message": "rule reads matched bench.read"},
        "conditions": [
            {"type": "Classified", "status": "True", "reason": "RuleMatched",
             "message": "rule reads matched bench.read", "lastTransitionTime": now},
            {"type": "Decided", "status": "True", "reason": "AutoApproved",
             "message": "tier 1", "lastTransitionTime": now}],
    }}  # fmt: skip


class ApprovalWatch(RequestWatch):
    """Notes when each request is first seen Approved."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        super().__init__(api, namespace, time.perf_counter)
        self.seen: dict[str, float] = {}
        self.decided_at: dict[str, float] = {}  # the operator's decision.at (wall clock)
        self.versions: dict[str, int] = {}  # watch events (writes) per request

    def note(self, obj: dict[str, Any], now: float) -> None:
        decision = (obj.get("status") or {}).get("decision") or {}
        name = obj["metadata"]["name"]
        self.versions[name] = self.versions.get(name, 0) + 1
        if decision.get("outcome") == "Approved" and name not in self.seen:
            self.seen[name] = now
            self.decided_at[name] = parse_time(decision["at"]).timestamp()


async def open_loop(
    rate: float, seconds: float, send: Callable[[int, float], Awaitable[None]]
) -> float:
    """Call ``send(i, scheduled)`` ``rate`` times a second for ``seconds``; returns the start."""
    count = max(1, round(rate * seconds))
    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return start


class Bench:
    def __init__(self, env: BenchEnvironment, profiler: Profiler | None = None) -> None:
        self.env = env
        self.profiler = profiler

    async def __aenter__(self) -> "Bench":
        self.agent = self.env.api(f"{NS}/{AGENT}")
        self.floor_agent = self.env.api(f"{FLOOR_NS}/{FLOOR_AGENT}")
        self.writer = self.env.api("operator")
        self.watch = ApprovalWatch(self.env.api(f"{NS}/{AGENT}"), NS)
        await self.watch.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.watch.stop()
        for api in (self.agent, self.floor_agent, self.writer, self.watch.api):
            await api.close()

    async def handoff(self, rate: float, seconds: float) -> dict[str, Any]:
        """Tier 1 requests at ``rate`` per second: latency to the agent seeing Approved."""
        sent: dict[str, float] = {}
        wall: dict[str, float] = {}  # scheduled send time on the wall clock, for the breakdown
        errors = 0
        path = resource_path(GROUP, VERSION, REQUESTS, NS)
        offset = time.time() - time.perf_counter()

        async def send(i: int, scheduled: float) -> None:
            nonlocal errors
            try:
                created = await self.agent.create(path, _request(NS, AGENT, i))
            except KubeError:
                errors += 1
                return
            sent[created["metadata"]["name"]] = scheduled
            wall[created["metadata"]["name"]] = scheduled + offset

        self.sent = sent
        start = await open_loop(rate, seconds, send)
        await until(lambda: all(n in self.watch.seen for n in sent), GRACE)
        latencies = [self.watch.seen[n] - t for n, t in sent.items() if n in self.watch.seen]
        lost = errors + sum(1 for n in sent if n not in self.watch.seen)
        done = [self.watch.seen[n] for n in sent if n in self.watch.seen]
        result = self._result("handoff", rate, seconds, latencies, lost, start, done)
        # Where the time goes: send -> the operator's decision, and decision -> the agent sees it.
        decided = [n for n in sent if n in self.watch.decided_at]
        before = stats([self.watch.decided_at[n] - wall[n] for n in decided], 1000)
        after = stats(
            [self.watch.seen[n] + offset - self.watch.decided_at[n] for n in decided], 1000
        )
        result["to_decision_ms"] = [before["median"], before["p99"]]
        result["decision_to_seen_ms"] = [after["median"], after["p99"]]
        return result

    async def cpu(self, rate: float, seconds: float) -> dict[str, Any]:
        """CPU milliseconds per request of the operator, kube-apiserver, etcd and this client
        (the agents' and the floor's client, and the agent's watch), for the floor and then
        for Handoff at the same rate, each less what the process spends idle; and the writes
        per Handoff request (the agent's watch events on it) and Events posted on it."""
        assert self.env.operator is not None
        assert self.env.operator.process is not None
        assert self.env.cluster is not None
        running = self.env.cluster.control_plane.running()
        operator = self.env.operator.process.pid
        meter = CpuMeter({"operator": operator, "apiserver": running["kube-apiserver"],
                          "etcd": running["etcd"], "client": os.getpid()})  # fmt: skip
        out: dict[str, Any] = {"rate": rate}
        for path, run in (("floor", self.floor), ("handoff", self.handoff)):
            meter.start()
            await asyncio.sleep(IDLE_SECONDS)
            idle = meter.stop()
            if path == "handoff" and self.profiler is not None:
                self.profiler.cpu(operator, "decisions-tier1")
            meter.start()
            result = await run(rate, seconds)
            done = result["completed"]
            if path == "handoff":  # a loaded machine: count every request the operator decided
                await until(lambda: all(n in self.watch.seen for n in self.sent), CPU_GRACE)
                done = sum(1 for n in self.sent if n in self.watch.seen)
            await asyncio.sleep(SETTLE_SECONDS)
            busy = meter.stop()
            if path == "handoff" and self.profiler is not None:
                self.profiler.stop()
            out[path] = per_request(busy, idle, done) | {"offered": result["offered"],
                "median_ms": result["median_ms"], "p99_ms": result["p99_ms"]}  # fmt: skip
        names = set(self.sent)
        writes = [self.watch.versions.get(name, 0) for name in names]
        out["handoff"]["writes_per_request"] = round(sum(writes) / max(len(writes), 1), 2)
        listing = await self.writer.get(resource_path("", "v1", "events", NS))
        posted = [e for e in listing.get("items") or []
                  if (e.get("involvedObject") or {}).get("name") in names]  # fmt: skip
        out["handoff"]["events_per_request"] = round(len(posted) / max(len(names), 1), 2)
        return out

    async def floor(self, rate: float, seconds: float, event: bool = False) -> dict[str, Any]:
        """The same client doing both writes itself: create, then the status patch. With
        ``event``, it then posts the Event the operator posts for the decision, once the patch
        is done (the operator's is off the decision's path too): what the third write costs the
        API server and etcd, and the decisions beside it."""
        path = resource_path(GROUP, VERSION, REQUESTS, FLOOR_NS)
        events = resource_path("", "v1", "events", FLOOR_NS)
        latencies: list[float] = []
        finished: list[float] = []
        errors = 0
        unposted = 0  # Events refused: the decision's latency is counted all the same

        async def send(i: int, scheduled: float) -> None:
            nonlocal errors, unposted
            try:
                created = await self.floor_agent.create(path, _request(FLOOR_NS, FLOOR_AGENT, i))
                status = _floor_status(created["metadata"]["creationTimestamp"])
                await self.writer.merge_patch(
                    f"{path}/{created['metadata']['name']}/status", status
                )
            except KubeError:
                errors += 1
                return
            now = time.perf_counter()
            latencies.append(now - scheduled)
            finished.append(now)
            if event:
                try:
                    await self.writer.create(events, _floor_event(created))
                except KubeError:
                    unposted += 1

        start = await open_loop(rate, seconds, send)
        if not event:
            return self._result("floor", rate, seconds, latencies, errors, start, finished)
        result = self._result("floor+event", rate, seconds, latencies, errors, start, finished)
        return {**result, "events_refused": unposted}

    @staticmethod
    def _result(path: str, rate: float, seconds: float, latencies: list[float], lost: int,  # noqa: PLR0917
                start: float, finished: list[float]) -> dict[str, Any]:  # fmt: skip
        offered = max(1, round(rate * seconds))
        span = (max(finished) - start) if finished else seconds
        figures = stats(latencies + [float("inf")] * lost, 1000)
        sustained = (lost == 0 and figures["p99"] is not None and figures["p99"] < P99_LIMIT_MS
                     and len(latencies) >= offered)  # fmt: skip
        return {"path": path, "rate": rate, "seconds": seconds, "offered": offered,
                "completed": len(latencies), "lost": lost,
                "achieved_rate": round(len(latencies) / max(span, 1e-9), 1),
                "median_ms": figures["median"], "p99_ms": figures["p99"], "sustained": sustained,
                "_latencies": latencies}  # fmt: skip


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from several slices at the same rate (their latencies pooled)."""
    latencies = [v for r in results for v in r["_latencies"]]
    lost = sum(r["lost"] for r in results)
    offered = sum(r["offered"] for r in results)
    figures = stats(latencies + [float("inf")] * lost, 1000)
    sustained = (lost == 0 and figures["p99"] is not None and figures["p99"] < P99_LIMIT_MS
                 and len(latencies) >= offered)  # fmt: skip
    merged = {"path": results[0]["path"], "rate": results[0]["rate"],
              "seconds": sum(r["seconds"] for r in results), "slices": len(results),
              "offered": offered, "completed": len(latencies), "lost": lost,
              "achieved_rate": min(r["achieved_rate"] for r in results),
              "median_ms": figures["median"], "p99_ms": figures["p99"], "sustained": sustained}  # fmt: skip
    if any("events_refused" in r for r in results):  # the floor posting Events: none lost
        merged["events_refused"] = sum(r.get("events_refused", 0) for r in results)
    for key in ("to_decision_ms", "decision_to_seen_ms"):
        if key in results[0]:
            merged[key] = [
                max(r[key][0] or 0 for r in results),
                max(r[key][1] or 0 for r in results),
            ]
    return merged


async def paired(
    bench: Bench, rate: float, slices: int, seconds: float, with_event: bool = False
) -> tuple[dict[str, Any], ...]:
    """The floor and Handoff (and, ``with_event``, the floor posting an Event too) at the same
    rate in alternating slices (floor first, then Handoff first, ...), so that all see the same
    moments of a shared, noisy machine; merged in that order."""
    runs: list[Callable[[float, float], Awaitable[dict[str, Any]]]] = [bench.floor, bench.handoff]
    if with_event:
        runs.append(functools.partial(bench.floor, event=True))
    found: dict[str, list[dict[str, Any]]] = {}
    for k in range(slices):
        for run in runs[k % len(runs) :] + runs[: k % len(runs)]:
            result = await run(rate, seconds)
            found.setdefault(result["path"], []).append(result)
            await asyncio.sleep(1)  # let a backlog drain
    return tuple(merge(results) for results in found.values())


LADDER = (30, 42, 60, 84, 118, 165, 230)


def between(ladder: list[dict[str, Any]]) -> list[int]:
    """The ladder's steps are 40% apart, so a share of the floor's rate read off them is 0.71 or
    1.0 one step either side of the truth. For each path, the step between its highest
    sustained step and the next one up that failed (their geometric middle, 18% above): the
    rates to climb once more, in order, none already climbed."""
    climbed = {step["rate"] for step in ladder}
    found = set()
    for path in ("floor", "handoff"):
        held = [step["rate"] for step in ladder if step[path]["sustained"]]
        if not held:
            continue
        above = [rate for rate in sorted(climbed) if rate > max(held)]
        if above:
            found.add(round(math.sqrt(max(held) * above[0])))
    return sorted(found - climbed)


async def measure(env: BenchEnvironment, *, slice_seconds: float = 6, confirm_seconds: float = 60,
                  cpu_seconds: float = 15, profiler: Profiler | None = None,
                  log: Callable[[str], None] = print, cpu_only: bool = False) -> dict[str, Any]:  # fmt: skip
    """CPU per request at a rate every path keeps up with; latency at 10 and 50 per second and
    at the highest sustained rate, and that rate beside the floor's: both climb the same ladder
    of rates, in alternating slices."""
    async with Bench(env, profiler) as bench:
        await bench.floor(20, 2)  # warm both paths: connections, caches, imports
        await bench.handoff(20, 2)
        cpu = await bench.cpu(CPU_RATE, cpu_seconds)
        log(cpu_line(cpu))
        if cpu_only:
            return {"cpu": cpu}
        rows: dict[str, Any] = {}
        for rate in (10, 50):
            floor, handoff, *event = await paired(bench, rate, 4, slice_seconds, rate == 50)
            log(
                f"  {rate}/s: floor {floor['median_ms']}/{floor['p99_ms']} ms, handoff {handoff['median_ms']}/{handoff['p99_ms']} ms (median/p99)"
                + "".join(
                    f", floor with its Event {e['median_ms']}/{e['p99_ms']} ms"
                    f" ({e.get('events_refused', 0)} Events refused)"
                    for e in event
                )
            )
            rows[str(rate)] = {
                "floor": floor,
                "handoff": handoff,
                **({"floor_event": event[0]} if event else {}),
            }
        ladder: list[dict[str, Any]] = []
        for rate in LADDER:
            floor, handoff = await paired(bench, rate, 2, slice_seconds)
            ladder.append({"rate": rate, "floor": floor, "handoff": handoff})
            log(
                f"  ladder {rate}/s: floor p99 {floor['p99_ms']} ms sustained {floor['sustained']}; handoff p99 {handoff['p99_ms']} ms sustained {handoff['sustained']}"
            )
            if not floor["sustained"] and not handoff["sustained"]:
                break
        for rate in between(ladder):  # a step at each path's edge, in the same paired slices
            floor, handoff = await paired(bench, rate, 2, slice_seconds)
            ladder.append({"rate": rate, "floor": floor, "handoff": handoff})
            log(
                f"  ladder {rate}/s (between): floor p99 {floor['p99_ms']} ms sustained {floor['sustained']}; handoff p99 {handoff['p99_ms']} ms sustained {handoff['sustained']}"
            )
        ladder.sort(key=lambda step: step["rate"])
        floor_rate = max((s["rate"] for s in ladder if s["floor"]["sustained"]), default=0)
        best = max((s["rate"] for s in ladder if s["handoff"]["sustained"]), default=LADDER[0])
        candidates = sorted({s["rate"] for s in ladder if s["rate"] <= best}, reverse=True)
        confirm: dict[str, Any] = {}
        for rate in candidates[:3]:  # the best step, then the steps below it while 60 s fails
            confirm = merge([await bench.handoff(rate, confirm_seconds)])
            log(
                f"  handoff held {rate}/s for {confirm_seconds:.0f}s: median {confirm['median_ms']} ms, p99 {confirm['p99_ms']} ms, lost {confirm['lost']}, sustained {confirm['sustained']}"
            )
            if confirm["sustained"]:
                break
        if confirm:
            top_floor = merge([await bench.floor(confirm["rate"], 2 * slice_seconds)])
            rows["max"] = {"floor": top_floor, "handoff": confirm}
    latency = {
        key: {"rate": row["handoff"]["rate"], "handoff": row["handoff"], "floor": row["floor"],
              "median_ratio": ratio(row["handoff"]["median_ms"], row["floor"]["median_ms"]),
              "p99_ratio": ratio(row["handoff"]["p99_ms"], row["floor"]["p99_ms"]),
              **({"floor_event": row["floor_event"],
                  "p99_ratio_event": ratio(row["handoff"]["p99_ms"], row["floor_event"]["p99_ms"])}
                 if "floor_event" in row else {})}
        for key, row in rows.items()
    }  # fmt: skip
    sustained_rate = confirm["rate"] if confirm.get("sustained") else 0
    return {
        "cpu": cpu,
        "latency": latency,
        "ladder": ladder,
        "throughput": {"handoff_rate": sustained_rate, "handoff_run": confirm,
                       "floor_rate": floor_rate, "share_of_floor": ratio(sustained_rate, floor_rate)},
    }  # fmt: skip


def cpu_line(cpu: dict[str, Any]) -> str:
    f, h = cpu["floor"], cpu["handoff"]
    return (
        f"  CPU ms per tier 1 request at {cpu['rate']:g}/s: operator {h['operator_ms']}; "
        f"kube-apiserver {h['apiserver_ms']} (floor {f['apiserver_ms']}); etcd {h['etcd_ms']} "
        f"(floor {f['etcd_ms']}); bench client {h['client_ms']} (floor {f['client_ms']}); "
        f"{h['writes_per_request']} writes and {h['events_per_request']} Events per request"
    )

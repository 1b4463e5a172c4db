"""10,000 pending tier 4 requests: the operator's memory, re-arming after a restart, expiry lateness.

The requests are filed by 24 concurrent clients while the operator classifies them. 8,000 wait in
a lane with a one-hour window (they stay pending through the run); once those are all waiting,
2,000 more are filed over ten rules whose windows (100 s to 154 s) differ by 6 s, so their
deadlines fall over about a minute after the restart, with all 10,000 deadlines armed. Then:

- memory: the operator's resident set (VmRSS) once all 10,000 are armed;
- re-arm: the operator is stopped (SIGTERM) and started again; the time from the start until its
  ``handoff_pending_requests`` gauge counts all 10,000 again (each one is counted when its deadline
  is armed in the scheduler);
- lateness: a watch notes when each short-window request is seen Denied (Expired); lateness is
  that time minus ``status.deadline``, both on this machine's clock. Deadlines are whole seconds
  (creation time plus window), so they fall in waves of up to about 45 at once;
- the floor of that lateness, measured next, with the operator stopped: the same waves, one a
  second, written by a client that already holds each object (as the operator holds a request it
  read ahead): at each whole second it patches the status of as many one-hour requests as the
  wave had, 16 at a time (the operator's slots), with the status an expiry wrote, and the same
  watch notes when each is seen. What is left between the two is Handoff's own work.
"""

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

from common import RequestWatch, stats, until
from cpu import CpuMeter
from environment import BenchEnvironment, metric_sum, operator_rss_mb
from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeError, resource_path
from handoff.domain.timefmt import parse_time
from profiler import Profiler

NS = "bench-scale"
AGENT = "scale-agent"
TOTAL = 10_000
SHORT = 2_000
SHORT_RULES = 10
SHORT_WINDOW = 100  # seconds for the first short rule; each next one SPREAD s more
SPREAD = 6
CLIENTS = 24


def policy() -> dict[str, Any]:
    rules = [{"name": f"expire-{k}", "actions": [f"bench.expire.{k}"], "tier": 4,
              "decisionWindow": f"{SHORT_WINDOW + SPREAD * k}s"} for k in range(SHORT_RULES)]  # fmt: skip
    rules.append({"name": "hold", "actions": ["bench.hold"], "tier": 4, "decisionWindow": "1h"})
    return {"agents": {"serviceAccounts": [AGENT]}, "defaultTier": 4,
            "reviewers": {"users": ["alice"]}, "rules": rules}  # fmt: skip


def _request(i: int, total: int = TOTAL, short_count: int = SHORT) -> dict[str, Any]:
    short = i >= total - short_count
    action = f"bench.expire.{i % SHORT_RULES}" if short else "bench.hold"
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ActionRequest",
            "metadata": {"generateName": "s-", "namespace": NS},
            "spec": {"agent": AGENT, "action": action, "target": f"db:table/{i}",
                     "parameters": {"i": i}, "summary": f"write {i}", "reasoning": "benchmark",
                     "blastRadius": "one row"}}  # fmt: skip


def _pending(env: BenchEnvironment) -> float:
    """Requests the operator has armed a deadline for, plus those it expired since it started
    (the earliest deadlines may fall while the rest are still being re-armed)."""
    assert env.operator is not None
    try:
        text = env.operator.metrics()
    except OSError:
        return 0.0
    expired = metric_sum(text, "handoff_action_requests_total", namespace=NS, reason="Expired")
    return metric_sum(text, "handoff_pending_requests", namespace=NS) + expired


def _expired(env: BenchEnvironment) -> int:
    assert env.operator is not None
    text = env.operator.metrics()
    return int(metric_sum(text, "handoff_action_requests_total", namespace=NS, reason="Expired"))


async def _wait_pending(env: BenchEnvironment, count: int, limit: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if await asyncio.to_thread(_pending, env) >= count:
            return time.perf_counter() - started
        # Each scrape costs the operator CPU (the re-arm profile: prometheus_client's
        # generate_latest was 12% of its samples at 4 scrapes a second): twice a second.
        await asyncio.sleep(0.5)
    return None


async def measure(  # noqa: PLR0915 - the run's steps, in order
    env: BenchEnvironment, log: Callable[[str], None] = print, *, total: int = TOTAL,
    short: int = SHORT, profiler: Profiler | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``total`` and ``short`` are smaller while iterating (``run.py --pending``)."""
    agent = env.api(f"{NS}/{AGENT}")
    path = resource_path(GROUP, VERSION, REQUESTS, NS)
    errors = 0

    async def client(queue: Iterator[int]) -> None:
        nonlocal errors
        for i in queue:
            for _ in range(5):
                try:
                    await agent.create(path, _request(i, total, short))
                    break
                except KubeError:
                    errors += 1
                    await asyncio.sleep(0.5)

    assert env.operator is not None
    assert env.operator.process is not None
    if profiler is not None:
        profiler.trace(env.operator.process.pid)
        profiler.heap(env.operator.process.pid, "1-idle")
        profiler.cpu(env.operator.process.pid, "scale-fill")
    # The long waits first; the short ones once those are in, so that their windows start
    # from a settled operator whatever this machine's speed.
    started = time.perf_counter()
    for first, last in ((0, total - short), (total - short, total)):
        queue = iter(range(first, last))
        await asyncio.gather(*(client(queue) for _ in range(CLIENTS)))
        filed = time.perf_counter() - started
        armed = await _wait_pending(env, last, 600)
        log(
            f"  filed {last} in {filed:.0f}s ({errors} retries), all pending after {time.perf_counter() - started:.0f}s"
        )
    await agent.close()
    fill = time.perf_counter() - started
    assert env.operator is not None
    await asyncio.sleep(2)
    rss = operator_rss_mb(env.operator)
    if profiler is not None:
        profiler.stop()
        await asyncio.to_thread(profiler.heap, env.operator.process.pid, "2-pending")

    watch = _ExpiryWatch(env)
    await watch.start()
    # On a slow machine some short deadlines pass before the restart: those requests are
    # decided, and the restarted operator has nothing to re-arm for them.
    expired_before = _expired(env)
    env.operator.stop()
    restarted = time.perf_counter()
    await asyncio.to_thread(env.operator.start)
    healthy = time.perf_counter() - restarted
    if profiler is not None:
        assert env.operator.process is not None
        profiler.trace(env.operator.process.pid)
        profiler.cpu(env.operator.process.pid, "scale-rearm")
    rearm = await _wait_pending(env, total - expired_before, 300)
    if profiler is not None:
        profiler.stop()
        await asyncio.to_thread(profiler.heap, env.operator.process.pid, "3-rearmed")
        profiler.cpu(env.operator.process.pid, "scale-expiry")
    rearm_total = None if rearm is None else round(healthy + rearm, 2)
    log(
        f"  re-armed {total} deadlines {rearm_total}s after the restart (healthy after {healthy:.1f}s)"
    )
    rss_after = operator_rss_mb(env.operator)
    assert env.cluster is not None
    assert env.operator.process is not None
    running = env.cluster.control_plane.running()
    meter = CpuMeter({"operator": env.operator.process.pid, "apiserver": running["kube-apiserver"],
                      "etcd": running["etcd"]})  # fmt: skip
    meter.start()
    await until(lambda: len(watch.late) >= short, SHORT_WINDOW + SPREAD * SHORT_RULES + 60)
    spent, seconds = meter.stop()
    await watch.stop()
    rss_settled = operator_rss_mb(env.operator)  # kopf's pass and the expiries over
    if profiler is not None:
        profiler.stop()
    floor = await _floor(env, [watch.waves[d] for d in sorted(watch.waves)], total - short, log)
    late = stats(list(watch.late.values()), 1000)
    log(
        f"  {len(watch.late)} of {short} expired; late by median {late['median']} ms, p99 {late['p99']} ms"
        f" ({len(watch.waves)} deadlines, up to {max(watch.waves.values(), default=0)} at once)"
    )
    return {
        "pending": total,
        "fill_seconds": round(fill, 1),
        "all_armed_before_restart": armed is not None,
        "rss_mb": round(rss, 1),
        "rss_mb_after_restart": round(rss_after, 1),  # once all are armed
        "rss_mb_settled": round(rss_settled, 1),  # once the short ones expired too
        "rearm_seconds": rearm_total,
        "operator_healthy_seconds": round(healthy, 2),
        "expired": len(watch.late),
        "expiries_expected": short,
        "lateness_ms": late,
        "early": sum(1 for v in watch.late.values() if v < 0),
        # Deadlines are whole seconds (creation time + window): the requests sharing one fall
        # together, a wave the operator decides at once.
        "waves": _waves(watch.waves),
        "floor_lateness_ms": floor,
        "expired_before_restart": expired_before,
        # From the end of the re-arm to the last expiry: CPU per expiry, idle time included.
        "expiry_cpu_ms": _per_expiry(spent, seconds, len(watch.late)),
    }


async def _floor(
    env: BenchEnvironment, waves: list[int], held: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """The waves of ``waves`` (their sizes, in order), one a second, written straight to the API
    server by a client holding each object: the lateness with nothing of Handoff in between."""
    assert env.operator is not None
    env.operator.stop()  # nothing reacts to the floor's writes
    client = env.api("operator")  # the identity that writes statuses
    path = resource_path(GROUP, VERSION, REQUESTS, NS)
    listing = await client.get(path)
    expired = [
        o
        for o in listing["items"]
        if ((o.get("status") or {}).get("decision") or {}).get("reason") == "Expired"
    ]
    held_ones = [o for o in listing["items"] if not (o.get("status") or {}).get("decision")]
    if not expired or len(held_ones) < sum(waves):
        await client.close()
        return stats([])
    written = expired[0]["status"]
    patch = {k: written[k] for k in ("phase", "decision", "conditions", "message") if k in written}
    targets = iter(held_ones[:held])
    watch = _SeenWatch(env)
    await watch.start()
    slots = asyncio.Semaphore(16)

    async def write(obj: dict[str, Any], at: float) -> None:
        meta = obj["metadata"]
        watch.due[meta["name"]] = at
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        async with slots:
            await client.merge_patch(
                resource_path(GROUP, VERSION, REQUESTS, NS, meta["name"]) + "/status", body
            )

    start = float(int(time.time()) + 2)
    writes = []
    for i, size in enumerate(waves):
        at = start + i
        await asyncio.sleep(max(at - time.time(), 0))
        writes.append(asyncio.gather(*(write(next(targets), at) for _ in range(size))))
    await asyncio.gather(*writes)
    await until(lambda: len(watch.late) >= sum(waves), 60)
    await watch.stop()
    await client.close()
    late = stats(list(watch.late.values()), 1000)
    log(
        f"  the floor, the same {len(waves)} waves written by a client: late by median {late['median']} ms, p99 {late['p99']} ms"
    )
    return late


def _waves(waves: dict[str, int]) -> dict[str, Any]:
    sizes = list(waves.values())
    return {"count": len(sizes), "largest": max(sizes, default=0), "median": stats(sizes)["median"]}


def _per_expiry(spent: dict[str, float], seconds: float, expired: int) -> dict[str, float]:
    per = {name: round(cpu * 1000 / max(expired, 1), 2) for name, cpu in spent.items()}
    return per | {"seconds": round(seconds, 1)}


class _SeenWatch(RequestWatch):
    """Notes when each object written by the floor is seen decided, against the second its wave
    was due."""

    def __init__(self, env: BenchEnvironment) -> None:
        super().__init__(env.api(), NS, time.time)
        self.due: dict[str, float] = {}
        self.late: dict[str, float] = {}

    def note(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        if name in self.due and name not in self.late and (obj.get("status") or {}).get("decision"):
            self.late[name] = now - self.due[name]

    async def stop(self) -> None:
        await super().stop()
        await self.api.close()


class _ExpiryWatch(RequestWatch):
    """Notes when each request is seen Denied, as lateness past its own status.deadline."""

    def __init__(self, env: BenchEnvironment) -> None:
        super().__init__(env.api(), NS, time.time)
        self.late: dict[str, float] = {}
        self.waves: dict[str, int] = {}  # deadline -> requests expiring at that very moment

    def note(self, obj: dict[str, Any], now: float) -> None:
        status = obj.get("status") or {}
        decision = status.get("decision") or {}
        name = obj["metadata"]["name"]
        if decision.get("reason") == "Expired" and name not in self.late:
            deadline = status["deadline"]
            self.late[name] = now - parse_time(deadline).timestamp()
            self.waves[deadline] = self.waves.get(deadline, 0) + 1

    async def stop(self) -> None:
        await super().stop()
        await self.api.close()

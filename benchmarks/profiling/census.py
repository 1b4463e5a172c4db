"""Where the operator's resident set goes with N pending requests (issue #21): the scale row's
filing, with a census of the operator's heap (``sitecustomize.py``, HANDOFF_CENSUS, SIGURG) when
idle, during the filing, once all are waiting, a while later, and after a restart.

    .venv/bin/python benchmarks/profiling/census.py --folder .handoff/census --pending 2000 \
        [--operator-from DIR] [--operator-env PYTHONMALLOC=malloc] [--trace DIR] [--restart]

Each census says the resident set and its peak (VmRSS, VmHWM), pymalloc's arenas against the
bytes live in them, glibc's heap against what is allocated in it, the gc-tracked objects by type
and the asyncio tasks by coroutine. ``--trace DIR`` adds tracemalloc snapshots (idle, pending)
for ``benchmarks/profiler.py DIR N``. Bench diagnostics only; never part of ``make bench``.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import scale  # noqa: E402
from environment import BenchEnvironment, metric_sum  # noqa: E402
from handoff import GROUP, REQUESTS, VERSION  # noqa: E402
from handoff.adapters.kube import KubeError, resource_path  # noqa: E402
from profiler import Profiler, operator_env  # noqa: E402


class Census:
    def __init__(self, env: BenchEnvironment, out: Path) -> None:
        self.env, self.out = env, out
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def take(self, label: str) -> dict[str, Any]:
        assert self.env.operator is not None
        assert self.env.operator.process is not None
        before = self.out.read_text().count("\n") if self.out.exists() else 0
        os.kill(self.env.operator.process.pid, signal.SIGURG)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            lines = self.out.read_text().splitlines() if self.out.exists() else []
            if len(lines) > before:
                row: dict[str, Any] = json.loads(lines[-1])
                self.rows.append((label, row))
                print(f"  census {label}: {summary(row)}", flush=True)
                return row
        raise RuntimeError("the operator wrote no census")


def summary(row: dict[str, Any]) -> str:
    s, p, g = row["status_kB"], row.get("pymalloc", {}), row.get("glibc", {})
    arenas = p.get("arenas allocated current", 0)
    return (
        f"RSS {s['VmRSS'] / 1024:.1f} MB (peak {s['VmHWM'] / 1024:.1f}); pymalloc {arenas} arenas "
        f"({arenas} MB), live {p.get('bytes in allocated blocks', 0) / 1e6:.1f} MB; glibc heap "
        f"{g.get('arena', 0) / 1e6:.1f} MB, in use {g.get('in_use', 0) / 1e6:.1f} MB, mmapped "
        f"{g.get('mmapped', 0) / 1e6:.1f} MB; {row['gc_objects']} gc objects; "
        f"{row.get('tasks', '?')} tasks; {row['seconds']} s"
    )


def pending(env: BenchEnvironment) -> float:
    assert env.operator is not None
    try:
        return metric_sum(env.operator.metrics(), "handoff_pending_requests", namespace=scale.NS)
    except OSError:
        return 0.0


async def wait_pending(env: BenchEnvironment, count: int, limit: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if await asyncio.to_thread(pending, env) >= count:
            return time.perf_counter() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"fewer than {count} pending after {limit:.0f} s")


def rss_kb(env: BenchEnvironment) -> tuple[int, int]:
    assert env.operator is not None
    assert env.operator.process is not None
    text = Path(f"/proc/{env.operator.process.pid}/status").read_text()
    fields = {ln.split(":")[0]: int(ln.split()[1]) for ln in text.splitlines()
              if ln.startswith(("VmRSS:", "VmHWM:"))}  # fmt: skip
    return fields["VmRSS"], fields["VmHWM"]


async def fill(env: BenchEnvironment, total: int) -> None:
    """``total`` requests in the one-hour lane, by 24 clients, as the scale row files them;
    the operator's resident set every second meanwhile."""
    agent = env.api(f"{scale.NS}/{scale.AGENT}")
    path = resource_path(GROUP, VERSION, REQUESTS, scale.NS)
    queue = iter(range(total))
    filed = 0

    async def client() -> None:
        nonlocal filed
        for i in queue:
            for _ in range(5):
                try:
                    await agent.create(path, scale._request(i, total, 0))
                    filed += 1
                    break
                except KubeError:
                    await asyncio.sleep(0.5)

    async def sample() -> None:
        started = time.perf_counter()
        while True:
            await asyncio.sleep(5)
            rss, hwm = rss_kb(env)
            done = await asyncio.to_thread(pending, env)
            print(f"  {time.perf_counter() - started:5.0f}s: filed {filed}, waiting {done:.0f}, "
                  f"RSS {rss / 1024:.1f} MB (peak {hwm / 1024:.1f})", flush=True)  # fmt: skip

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(client() for _ in range(scale.CLIENTS)))
        await wait_pending(env, total, 900)
    finally:
        sampler.cancel()
        await agent.close()


async def main() -> int:  # noqa: PLR0915 - the run's steps, in order
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--pending", type=int, default=2000)
    parser.add_argument("--operator-from", default=None, metavar="DIR")
    parser.add_argument("--operator-env", action="append", default=[])
    parser.add_argument("--trace", default=None, metavar="DIR", help="tracemalloc snapshots")
    parser.add_argument("--restart", action="store_true", help="a census after a restart too")
    parser.add_argument("--settle", type=float, default=15, help="seconds before the 2nd census")
    args = parser.parse_args()
    folder = Path(args.folder).resolve()
    env = BenchEnvironment(folder).start()
    out = folder / "census.jsonl"
    out.unlink(missing_ok=True)
    profiler = Profiler(Path(args.trace)) if args.trace else None
    paths = [str(HERE)] + ([str(Path(args.operator_from).resolve())] if args.operator_from else [])
    env.operator_env = (operator_env(Path(args.trace)) if args.trace else {}) | {
        "PYTHONPATH": os.pathsep.join(paths), "HANDOFF_CENSUS": str(out)}  # fmt: skip
    for setting in args.operator_env:
        key, _, value = setting.partition("=")
        env.operator_env[key] = value
    census = Census(env, out)
    try:
        env.namespace(scale.NS, (scale.AGENT,))
        operator = env.start_operator([scale.NS])
        await env.apply_policy(scale.NS, "bench-scale", scale.policy())
        await asyncio.sleep(2)
        census.take("idle")
        assert operator.process is not None
        if profiler is not None:
            profiler.trace(operator.process.pid)
            profiler.heap(operator.process.pid, "1-idle")
        started = time.perf_counter()
        await fill(env, args.pending)
        print(f"  {args.pending} waiting after {time.perf_counter() - started:.0f} s", flush=True)
        await asyncio.sleep(2)
        census.take("pending")
        if profiler is not None:
            await asyncio.to_thread(profiler.heap, operator.process.pid, "2-pending")
        await asyncio.sleep(args.settle)
        census.take(f"pending+{args.settle:g}s")
        if profiler is not None:
            await asyncio.to_thread(profiler.heap, operator.process.pid, "3-settled")
        if args.restart:
            operator.stop()
            operator.start()
            await wait_pending(env, args.pending, 300)
            census.take("re-armed")
            await asyncio.sleep(args.settle)
            census.take(f"re-armed+{args.settle:g}s")
        idle = census.rows[0][1]["status_kB"]["VmRSS"]
        print(f"\nper pending request over idle ({args.pending}), load {os.getloadavg()}:")
        for label, row in census.rows[1:]:
            grown = (row["status_kB"]["VmRSS"] - idle) * 1024 / args.pending
            print(f"  {label:>16}: {grown:8.0f} B")
        return 0
    finally:
        env.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

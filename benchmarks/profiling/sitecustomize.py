"""Imported at start-up by an operator run with this folder on PYTHONPATH (``run.py --profile``):
with HANDOFF_TRACEMALLOC set, SIGUSR1 starts tracing allocations (after start-up, which tracing
would slow past its health check) and SIGUSR2 writes a snapshot to
``$HANDOFF_TRACEMALLOC_OUT.<n>``. Never part of the operator itself."""

import itertools
import os
import signal
import tracemalloc

if os.environ.get("HANDOFF_TRACEMALLOC"):
    _count = itertools.count()

    def _start(_signum: int, _frame: object) -> None:
        tracemalloc.start(int(os.environ["HANDOFF_TRACEMALLOC"]))

    def _dump(_signum: int, _frame: object) -> None:
        path = f"{os.environ['HANDOFF_TRACEMALLOC_OUT']}.{next(_count)}"
        tracemalloc.take_snapshot().dump(path)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)

if os.environ.get("HANDOFF_RELEASE_PROBE"):
    # How much of the resident set is garbage or free heap: on SIGWINCH, append the resident
    # set before, after a full collection and after malloc_trim (and each step's time) to the
    # file HANDOFF_RELEASE_PROBE names. Bench diagnostics only.
    import ctypes
    import gc
    import time

    def _rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def _probe(_signum: int, _frame: object) -> None:
        before = _rss_kb()
        started = time.perf_counter()
        objects = len(gc.get_objects())
        collected = gc.collect()
        gc_ms = (time.perf_counter() - started) * 1000
        after_gc = _rss_kb()
        started = time.perf_counter()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trim_ms = (time.perf_counter() - started) * 1000
        with open(os.environ["HANDOFF_RELEASE_PROBE"], "a") as f:
            f.write(
                f"rss {before} kB; gc over {objects} objects freed {collected} in "
                f"{gc_ms:.1f} ms: {after_gc} kB; malloc_trim {trim_ms:.1f} ms: "
                f"{_rss_kb()} kB\n"
            )

    signal.signal(signal.SIGWINCH, _probe)

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

if os.environ.get("HANDOFF_CENSUS"):
    # Where the resident set goes, without a tracer: on SIGURG, append to the file
    # HANDOFF_CENSUS names the resident set and its peak (VmRSS, VmHWM), what pymalloc holds
    # (arenas) against what is live in them (sys._debugmallocstats), what glibc's heap holds
    # against what is allocated (mallinfo2), the gc-tracked objects by type created since the
    # start froze its own (gc.freeze), and the asyncio tasks by coroutine. Bench diagnostics only.
    import asyncio
    import collections
    import ctypes
    import gc
    import json
    import sys
    import tempfile
    import time

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                    "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip

    def _status() -> dict[str, int]:
        with open("/proc/self/status") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f
                    if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:"))}  # fmt: skip

    def _pymalloc() -> dict[str, int]:
        """The totals of sys._debugmallocstats (it prints to the C stderr: caught in a file)."""
        out: dict[str, int] = {}
        with tempfile.TemporaryFile("w+") as tmp:
            saved = os.dup(2)
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            # "# arenas allocated current = 2", "54 unused pools * 16384 bytes = ..."
            for line in tmp:
                left, eq, right = line.rpartition("=")
                words = left.replace("#", "").split()
                if not eq or not words or "free" in words or "each" in words:
                    continue
                if words[0][0].isdigit():
                    words = words[1:]
                key = " ".join(w for w in words if not w.startswith(("*", "1048576", "16384")))
                value = right.strip().replace(",", "").split()
                if key and key not in out and value and value[0].isdigit():
                    out[key] = int(value[0])
        return out

    def _census(_signum: int, _frame: object) -> None:
        started = time.perf_counter()
        report: dict[str, object] = {"at": time.time(), "status_kB": _status()}
        report["pymalloc"] = _pymalloc()
        try:
            info = ctypes.CDLL("libc.so.6").mallinfo2
            info.restype = _MallInfo2
            m = info()
            report["glibc"] = {"arena": m.arena, "in_use": m.uordblks, "free": m.fordblks,
                               "mmapped": m.hblkhd}  # fmt: skip
        except (OSError, AttributeError):
            pass
        counts: collections.Counter[str] = collections.Counter()
        sizes: collections.Counter[str] = collections.Counter()
        for obj in gc.get_objects():
            name = type(obj).__module__ + "." + type(obj).__qualname__
            counts[name] += 1
            sizes[name] += sys.getsizeof(obj)
        report["gc_objects"] = sum(counts.values())
        report["by_type"] = [(n, counts[n], sizes[n]) for n, _ in sizes.most_common(40)]
        try:
            tasks = asyncio.all_tasks(asyncio.get_running_loop())
            names = collections.Counter(
                getattr(t.get_coro(), "__qualname__", "?") for t in tasks)  # fmt: skip
            report["tasks"] = len(tasks)
            report["tasks_by_coro"] = names.most_common(15)
        except RuntimeError:
            pass
        if tracemalloc.is_tracing():
            report["traced_current_peak"] = tracemalloc.get_traced_memory()
        report["seconds"] = round(time.perf_counter() - started, 3)
        with open(os.environ["HANDOFF_CENSUS"], "a") as f:
            f.write(json.dumps(report) + "\n")

    signal.signal(signal.SIGURG, _census)

"""CPU time a process spent (user + system, from /proc/<pid>/stat), per request.

On a shared 2-core machine a latency figure moves with everything else that runs; the CPU
seconds a process spends on a fixed number of requests hardly do. ``CpuMeter`` reads the
operator's, kube-apiserver's and etcd's counters before and after a run of requests, takes
off what each spends idle over the same time, and divides by the requests.
"""

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")  # clock ticks per second, the unit of utime and stime


def cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds. The command name (field 2) is in
    parentheses and may hold spaces or parentheses itself: fields are counted after the last
    ')'. utime and stime are fields 14 and 15, the 12th and 13th after the name."""
    rest = stat.rpartition(")")[2].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def read(pid: int) -> float:
    return cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


class CpuMeter:
    """The CPU seconds of named processes, between ``start`` and ``stop``."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self._start: dict[str, float] = {}
        self._at = 0.0

    def start(self) -> None:
        self._start = {name: read(pid) for name, pid in self.pids.items()}
        self._at = time.perf_counter()

    def stop(self) -> tuple[dict[str, float], float]:
        """CPU seconds of each process since ``start``, and the wall seconds between."""
        spent = {name: read(pid) - self._start[name] for name, pid in self.pids.items()}
        return spent, time.perf_counter() - self._at


def per_request(
    busy: tuple[Mapping[str, float], float],
    idle: tuple[Mapping[str, float], float],
    requests: int,
) -> dict[str, Any]:
    """CPU milliseconds per request of each process: what it spent during the run (``busy``:
    CPU seconds by name, wall seconds), less what it spends idle over as long (``idle``,
    measured just before), over ``requests``. Never below zero."""
    (spent, seconds), (quiet, quiet_seconds) = busy, idle
    out: dict[str, Any] = {"requests": requests, "seconds": round(seconds, 2)}
    for name, cpu in spent.items():
        rate = quiet.get(name, 0.0) / quiet_seconds if quiet_seconds > 0 else 0.0
        work = max(cpu - rate * seconds, 0.0)
        out[f"{name}_ms"] = round(1000 * work / requests, 3) if requests else None
        out[f"{name}_idle_ms_per_s"] = round(1000 * rate, 2)
    return out

"""The bench's CPU per request (benchmarks/cpu.py): read from /proc/<pid>/stat, idle taken off."""

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from cpu import TICKS, CpuMeter, cpu_seconds, per_request


def _stat(comm: str, utime: int, stime: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return f"4242 ({comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0"


def test_utime_plus_stime_in_seconds() -> None:
    assert cpu_seconds(_stat("python", 250, 50)) == pytest.approx(300 / TICKS)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    assert cpu_seconds(_stat("a) b (c", 7, 3)) == pytest.approx(10 / TICKS)


def test_reads_this_process() -> None:
    meter = CpuMeter({"me": os.getpid(), "gone": None})
    assert list(meter.pids) == ["me"]  # a process that is not there is left out
    meter.start()
    end = time.process_time() + 0.05
    while time.process_time() < end:  # spin: CPU time, not wall time
        pass
    spent, seconds = meter.stop()
    assert spent["me"] >= 0.03
    assert seconds >= spent["me"] * 0.5


def test_idle_cpu_over_the_same_time_is_taken_off_per_request() -> None:
    busy = ({"operator": 3.0, "apiserver": 2.0}, 10.0)  # CPU seconds over 10 s of requests
    idle = ({"operator": 0.3, "apiserver": 0.0}, 3.0)  # 0.1 s a second idle
    figures = per_request(busy, idle, 200)
    assert figures["operator_ms"] == pytest.approx(1000 * (3.0 - 1.0) / 200)
    assert figures["apiserver_ms"] == pytest.approx(10.0)
    assert figures["operator_idle_ms_per_s"] == pytest.approx(100.0)
    assert (figures["requests"], figures["seconds"]) == (200, 10.0)


def test_never_below_zero_and_none_without_requests() -> None:
    assert per_request(({"x": 0.1}, 10.0), ({"x": 1.0}, 1.0), 10)["x_ms"] == 0
    assert per_request(({"x": 0.1}, 10.0), ({"x": 0.0}, 1.0), 0)["x_ms"] is None

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

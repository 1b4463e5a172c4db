"""Imported at start-up by an operator run with this folder on PYTHONPATH (``run.py --profile``):
with HANDOFF_TRACEMALLOC set, allocations are traced and SIGUSR2 writes a snapshot to
``$HANDOFF_TRACEMALLOC_OUT.<n>``. Never part of the operator itself."""

import itertools
import os
import signal
import tracemalloc

if os.environ.get("HANDOFF_TRACEMALLOC"):
    tracemalloc.start(int(os.environ["HANDOFF_TRACEMALLOC"]))
    _count = itertools.count()

    def _dump(_signum: int, _frame: object) -> None:
        path = f"{os.environ['HANDOFF_TRACEMALLOC_OUT']}.{next(_count)}"
        tracemalloc.take_snapshot().dump(path)

    signal.signal(signal.SIGUSR2, _dump)

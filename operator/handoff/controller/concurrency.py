"""The controller's two concurrency helpers: a lock per key, and tasks run beside the work.

``KeyedLocks``: one lock per request being worked on, dropped when its last user leaves (a lock
kept for every request ever seen grows without bound at scale).
``TaskSet``: short tasks started and not awaited (Events, notifications, health writes) are kept
referenced here until they end, so that the event loop does not collect them half done.
``Lull``: whether deadlines are being decided; what only informs (Events) waits for a moment
without any.
"""

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from handoff.adapters.locks import KeyedLocks

__all__ = ["KeyedLocks", "Lull", "TaskSet"]


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class Lull:
    """Counts the deadlines being decided. ``wait`` returns once none is, or after ``patience``
    seconds at most: an Event waits there, so that the deadlines that fall in the same second (a
    wave: creation times are whole seconds) are all written before the API server spends its
    CPU on their Events. Only deadlines count: under a steady stream of new requests an Event
    is posted at once, as the stream's decisions are (held Events would go out in bursts, in
    the way of the decisions after them)."""

    def __init__(self, patience: float = 2.0) -> None:
        self.patience = patience
        self._deciding = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self._deciding += 1
        self._idle.clear()

    def end(self) -> None:
        self._deciding -= 1
        if not self._deciding:
            self._idle.set()

    async def wait(self, at_most: float | None = None) -> None:
        """Until no deadline is being decided, or ``at_most`` seconds (``patience`` by default)."""
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.patience if at_most is None else at_most)

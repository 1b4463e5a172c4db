"""The controller's two concurrency helpers: a lock per key, and tasks run beside the work.

``KeyedLocks``: one lock per request being worked on, dropped when its last user leaves (a lock
kept for every request ever seen grows without bound at scale).
``TaskSet``: short tasks started and not awaited (Events, notifications, health writes) are kept
referenced here until they end, so that the event loop does not collect them half done.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any

from handoff.adapters.locks import KeyedLocks

__all__ = ["KeyedLocks", "TaskSet"]


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

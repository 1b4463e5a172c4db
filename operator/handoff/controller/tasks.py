"""The operator's long-running tasks (the scheduler, the outcome reader, the reports...).

Each is written to survive any input and outlive any outage. One that ends with an exception
anyway is a bug: it is logged with its traceback, counted in
``handoff_background_task_failures_total`` and reported by /healthz, so that the Deployment
restarts the operator instead of leaving it leading with a part of it dead.
"""

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from handoff.adapters import metrics

log = logging.getLogger("handoff.operator")


def start(name: str, work: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
    """Run ``work`` as the background task ``name``, watched."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_ended)
    return task


def _ended(task: "asyncio.Task[None]") -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is None:
        log.info("background task %s finished", task.get_name())
        return
    metrics.TASK_FAILURES.labels(task=task.get_name()).inc()
    log.error("background task %s died: %s", task.get_name(), describe(error), exc_info=error)


def dead(tasks: Iterable["asyncio.Task[None]"]) -> list[str]:
    """The tasks that ended with an exception, each with what it was."""
    return [
        f"{task.get_name()} ({describe(error)})"
        for task in tasks
        if task.done() and not task.cancelled() and (error := task.exception()) is not None
    ]


def describe(error: BaseException) -> str:
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

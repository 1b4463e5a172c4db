"""What every benchmark shares: percentiles, summaries and the result table."""

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share 0.99 is p99) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def stats(values: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """n, median and p99 of ``values`` multiplied by ``scale`` (1000 turns seconds into ms)."""
    if not values:
        return {"n": 0, "median": None, "p99": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values) * scale, 3),
        "p99": round(percentile(values, 0.99) * scale, 3),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return round(value / baseline, 2)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain text table: ``columns`` are (key, heading) pairs."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    grid = [[heading for _, heading in columns]] + [
        [cell(row.get(key)) for key, _ in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
             for line in grid]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


async def until(condition: Callable[[], bool], limit: float, every: float = 0.05) -> bool:
    """Poll ``condition`` (filled in by another task) until it holds or ``limit`` seconds pass."""
    deadline = time.perf_counter() + limit
    for _ in iter(int, 1):  # forever; the deadline ends it
        if condition():
            return True
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(every)
    return False


class RequestWatch:
    """Follows a namespace's requests from now on (through 410s and reconnects) and hands each
    object to ``note`` with the moment it arrived, by ``clock``."""

    def __init__(self, api: KubeApi, namespace: str, clock: Callable[[], float]) -> None:
        self.api = api
        self.path = resource_path(GROUP, VERSION, REQUESTS, namespace)
        self.clock = clock
        self._version = ""
        self._task: asyncio.Task[None] | None = None

    def note(self, obj: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        await self._now()
        self._task = asyncio.create_task(self._run())

    async def _now(self) -> None:
        listing = await self.api.get(self.path + "?limit=1")
        self._version = listing["metadata"]["resourceVersion"]

    async def _run(self) -> None:
        while True:
            params = {"resourceVersion": self._version, "allowWatchBookmarks": "true"}
            with contextlib.suppress(KubeError):
                async for event in self.api.watch(self.path, params, 240):
                    now = self.clock()
                    obj = event["object"]
                    if event.get("type") == "ERROR":  # e.g. 410 Gone: start again from now
                        await self._now()
                        break
                    self._version = obj["metadata"]["resourceVersion"]
                    if event.get("type") != "BOOKMARK":
                        self.note(obj, now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


PARTS = ("classification", "decisions", "scale", "history", "gateway")
CLUSTER = ("decisions", "scale", "history")  # one control plane and operator for the three


def parts(only: str | None) -> tuple[str, ...]:
    """What ``run.py --only ONLY`` measures: everything without it, the three rows of the
    cluster with ``cluster``, else the one part named."""
    if only is None:
        return PARTS
    return CLUSTER if only == "cluster" else (only,)

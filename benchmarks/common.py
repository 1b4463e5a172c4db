"""What every benchmark shares: percentiles, summaries and the result table."""

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


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

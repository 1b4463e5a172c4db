"""The decisions row runs its paths in alternating slices, each path first in turn, and pools
each path's slices: the floor, Handoff and (at 50/s) the floor posting an Event per request."""

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import decisions
from decisions import between, paired


class Paths:
    """Stands in for the bench's two clients: each slice answers with the latencies it is
    given, and notes the order the slices ran in."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def floor(self, rate: float, seconds: float, event: bool = False) -> dict[str, Any]:
        if event:  # one of its two Events refused: its decisions are not lost for that
            return {**self._slice("floor+event", rate, [0.010, 0.020]), "events_refused": 1}
        return self._slice("floor", rate, [0.010, 0.020])

    async def handoff(self, rate: float, seconds: float) -> dict[str, Any]:
        return self._slice("handoff", rate, [0.015, 0.300])

    def _slice(self, path: str, rate: float, latencies: list[float]) -> dict[str, Any]:
        self.ran.append(path)
        return {"path": path, "rate": rate, "seconds": 6, "offered": 2, "lost": 0,
                "achieved_rate": rate, "_latencies": latencies}  # fmt: skip


def run(
    monkeypatch: pytest.MonkeyPatch, slices: int, with_event: bool
) -> tuple[Paths, tuple[dict[str, Any], ...]]:
    monkeypatch.setattr(decisions, "asyncio", _NoSleep)  # the 1 s drain between slices
    paths = Paths()
    return paths, asyncio.run(paired(paths, 50, slices, 6, with_event))  # type: ignore[arg-type]


class _NoSleep:
    @staticmethod
    async def sleep(_: float) -> None:
        return None


def test_two_paths_alternate_which_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    paths, merged = run(monkeypatch, 4, with_event=False)
    assert paths.ran == ["floor", "handoff", "handoff", "floor"] * 2
    assert [m["path"] for m in merged] == ["floor", "handoff"]
    assert [m["slices"] for m in merged] == [4, 4]


def test_with_the_event_each_of_three_paths_goes_first_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths, merged = run(monkeypatch, 3, with_event=True)
    assert paths.ran == ["floor", "handoff", "floor+event",
                         "handoff", "floor+event", "floor",
                         "floor+event", "floor", "handoff"]  # fmt: skip
    floor, handoff, event = merged
    assert (floor["path"], handoff["path"], event["path"]) == ("floor", "handoff", "floor+event")
    assert floor["completed"] == handoff["completed"] == event["completed"] == 6
    assert handoff["p99_ms"] > event["p99_ms"]  # each path's own latencies, pooled
    assert event["events_refused"] == 3
    assert event["lost"] == 0
    assert "events_refused" not in floor


def step(rate: int, floor: bool, handoff: bool) -> dict[str, Any]:
    return {"rate": rate, "floor": {"sustained": floor}, "handoff": {"sustained": handoff}}


def test_a_step_between_is_climbed_at_each_paths_edge() -> None:
    ladder = [step(30, True, True), step(42, True, True), step(60, True, True),
              step(84, True, False), step(118, False, False)]  # fmt: skip
    assert between(ladder) == [71, 100]  # Handoff between 60 and 84; the floor, 84 and 118


def test_no_step_between_where_a_path_held_nothing_or_everything_climbed() -> None:
    assert between([step(30, False, False)]) == []
    assert between([step(30, True, False)]) == []  # nothing above the floor's 30 was climbed
    assert between([step(30, True, True), step(42, False, False)]) == [35]  # once for both
    climbed = [step(30, True, True), step(35, True, False), step(42, True, False)]
    assert between(climbed) == [32]  # Handoff's edge, 30 to 35; the floor held all it climbed

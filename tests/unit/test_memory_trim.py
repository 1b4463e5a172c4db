"""When the operator gives memory back: a full collection after a burst (BURST queued at once),
a trim of the C heap every BURST passes of a steady stream, nothing while work is queued; and
the start's objects frozen out of the collections."""

import gc

import pytest
from handoff.controller import memory
from handoff.controller.requests import BURST, Requests


def _requests(*, queued: int = 0, burst: bool = False, passes: int = 0) -> Requests:
    found = Requests.__new__(Requests)  # only the burst bookkeeping is under test
    found._queued, found._burst, found._passes = queued, burst, passes
    return found


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(memory, "release", lambda: seen.append("release"))
    monkeypatch.setattr(memory, "trim", lambda: seen.append("trim"))
    return seen


def test_a_steady_stream_trims_the_heap_every_burst_of_passes(calls: list[str]) -> None:
    r = _requests(passes=BURST)
    r._after_burst()
    assert calls == ["trim"]  # no full collection: it can take hundreds of milliseconds
    assert r._passes == 0
    r._after_burst()
    assert calls == ["trim"]  # the count starts again


def test_a_burst_is_collected_and_trimmed(calls: list[str]) -> None:
    r = _requests(burst=True, passes=3)
    r._after_burst()
    assert calls == ["release"]
    assert (r._burst, r._passes) == (False, 0)


@pytest.mark.parametrize(("queued", "burst", "passes"), [(1, True, BURST), (0, False, BURST - 1)])
def test_nothing_is_given_back_while_busy_or_before_enough_passes(
    calls: list[str], queued: int, burst: bool, passes: int
) -> None:
    r = _requests(queued=queued, burst=burst, passes=passes)
    r._after_burst()
    assert calls == []
    assert (r._burst, r._passes) == (burst, passes)


def test_the_start_is_frozen_out_of_later_collections() -> None:
    try:
        memory.settle_start()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

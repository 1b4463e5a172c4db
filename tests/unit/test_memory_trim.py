"""When the operator gives memory back: a full collection after a burst (BURST queued at once),
a trim of the C heap every BURST passes of a steady stream, nothing while work is queued; what
is kept per request copied out of a burst's arenas when it grew by BURST; and the start's
objects frozen out of the collections."""

import gc
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from handoff.controller import memory
from handoff.controller.policies import PolicyIndex
from handoff.controller.publishing import Publisher
from handoff.controller.requests import BURST, Requests
from handoff.controller.scheduler import DEADLINE, RETAIN, DeadlineScheduler
from handoff.controller.waiting import Waiting

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


async def _never(key: Any) -> None:
    raise AssertionError(f"no timer fires here: {key}")


def _requests(*, queued: int = 0, burst: bool = False, passes: int = 0) -> Requests:
    found = Requests.__new__(Requests)  # only the memory bookkeeping is under test
    found._queued, found._burst, found._passes = queued, burst, passes
    found.scheduler = DeadlineScheduler(_never, lambda: NOW)
    found.waiting = Waiting(PolicyIndex(), found.scheduler, None, lambda: NOW)
    found.publisher = Publisher.__new__(Publisher)
    found.publisher._published = {}
    found._settled, found._compacted, found._started = {}, 0, 0.0
    return found


def _wait(r: Requests, count: int) -> None:
    """``count`` requests waiting, each key parsed from its own JSON as a watch event's is."""
    for i in range(count):
        key = (f"ns-{i % 3}", f"request-{i}")
        r.waiting.wait(key, NOW + timedelta(hours=1, seconds=i), "4")
        r.publisher._published[f"uid-{i}"] = {"classified", "pending"}
        r._settled[key] = str(1000 + i)


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


def test_what_waiting_requests_keep_is_copied_once_the_stream_is_quiet(calls: list[str]) -> None:
    r = _requests()
    _wait(r, BURST)
    r.scheduler.arm((RETAIN, "ns-0", "decided"), NOW + timedelta(days=30))
    due = dict(r.scheduler._due)
    pending, published, settled = (
        dict(r.waiting._pending),
        dict(r.publisher._published),
        dict(r._settled),
    )
    r._after_burst()
    assert calls == ["release"]  # copied, then collected: the burst's arenas can go
    assert r._compacted == BURST + 1
    # The same values, in other objects.
    assert r.scheduler._due == due
    assert r.waiting._pending == pending
    assert r.publisher._published == published
    assert r._settled == settled
    old = {key: key for key in due}
    for key in r.scheduler._due:
        assert isinstance(key, tuple)
        assert key is not old[key]
        assert key[2] is not cast(tuple[str, str, str], old[key])[2]
    old_keys = {key: key for key in pending}
    assert all(key is not old_keys[key] for key in r.waiting._pending)
    # The timers still fire in order of their times, whatever they were armed as before.
    assert r.scheduler._heap[0][0] == min(due.values())
    assert r.scheduler.due((DEADLINE, "ns-0", "request-0")) == NOW + timedelta(hours=1)


def test_a_stream_that_goes_on_copies_each_time_what_is_kept_grew_by_half(
    calls: list[str],
) -> None:
    r = _requests()
    _wait(r, 3 * BURST)
    r._compacted = 2 * BURST  # a copy was made at 2 * BURST: +50% is 3 * BURST
    r._started = time.monotonic()  # a pass started just now: not quiet
    r._after_burst()
    assert calls == ["release"]
    assert r._compacted == 3 * BURST


@pytest.mark.parametrize("compacted", [3 * BURST - BURST + 1, 5 * BURST // 2])
def test_a_busy_stream_does_not_copy_before_what_is_kept_grew_enough(
    calls: list[str], compacted: int
) -> None:
    r = _requests()
    _wait(r, 3 * BURST)
    r._compacted = compacted  # grown by under BURST, or by BURST but under half
    r._started = time.monotonic()
    key = next(iter(r.waiting._pending))
    r._after_burst()
    assert calls == []
    assert r._compacted == compacted
    assert next(iter(r.waiting._pending)) is key


def test_requests_that_went_lower_the_mark_the_growth_is_counted_from(calls: list[str]) -> None:
    r = _requests()
    _wait(r, BURST)
    r._compacted = 10 * BURST  # 10 * BURST were kept at the last copy; most were decided since
    r._after_burst()
    assert calls == []
    assert r._compacted == BURST
    _wait(r, 2 * BURST)  # BURST more: growth counts from the BURST kept, not from 10 * BURST
    r._after_burst()
    assert calls == ["release"]
    assert r._compacted == 2 * BURST


def test_fresh_copies_strings_tuples_and_times_and_keeps_the_rest() -> None:
    name = "".join(["request-", "1"])
    when = NOW + timedelta(seconds=1)
    key = ("deadline", "ns", name)
    copy = memory.fresh(key)
    assert copy == key
    assert copy is not key
    assert copy[2] is not name
    assert memory.fresh(when) == when
    assert memory.fresh(when) is not when
    assert memory.fresh("4") == "4"  # one character: CPython's own, nothing to copy
    marker = object()
    assert memory.fresh(marker) is marker
    assert memory.fresh(7) == 7

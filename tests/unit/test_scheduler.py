"""The deadline scheduler, waited on by condition: each test ends as soon as what it waits for
has happened (a few tens of milliseconds), never after a fixed sleep."""

import asyncio
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta

from handoff.controller.scheduler import DeadlineScheduler


def now() -> datetime:
    return datetime.now(UTC)


def test_fires_due_keys_in_order_and_skips_cancelled_and_rearmed() -> None:
    async def scenario() -> tuple[list[Hashable], int]:
        fired: list[Hashable] = []
        four = asyncio.Event()

        async def fire(key: Hashable) -> None:
            fired.append(key)
            if len(fired) == 4:
                four.set()

        scheduler = DeadlineScheduler(fire, now)
        task = asyncio.create_task(scheduler.run())
        start = now()
        scheduler.arm("late", start + timedelta(milliseconds=80))
        scheduler.arm("early", start + timedelta(milliseconds=20))
        scheduler.arm("cancelled", start + timedelta(milliseconds=30))
        scheduler.cancel("cancelled")
        scheduler.arm("moved", start + timedelta(milliseconds=10))
        scheduler.arm("moved", start + timedelta(milliseconds=50))
        scheduler.arm("past", start - timedelta(seconds=5))
        # "cancelled" (30 ms) or "moved" at its first time (10 ms) would come before "late"
        # (80 ms): the fourth key to fire is "late" only if both were skipped.
        await asyncio.wait_for(four.wait(), timeout=5)
        task.cancel()
        return fired, len(scheduler)

    assert asyncio.run(scenario()) == (["past", "early", "moved", "late"], 0)


def test_a_failing_handler_is_retried() -> None:
    async def scenario() -> int:
        calls = 0
        retried = asyncio.Event()

        async def fire(key: Hashable) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("API server unreachable")
            retried.set()

        scheduler = DeadlineScheduler(fire, now, retry_after=0.01)
        task = asyncio.create_task(scheduler.run())
        scheduler.arm("k", now())
        await asyncio.wait_for(retried.wait(), timeout=5)
        task.cancel()
        return calls

    assert asyncio.run(scenario()) == 2


def test_a_later_time_does_not_wake_the_loop_and_still_fires_in_order() -> None:
    """A start arms a retention timer for every decided request, all far later than what the
    loop already waits for: those wake nothing. A sooner one does, and every key still fires,
    also behind a cancelled head (whose wake-up comes early and finds the next one)."""

    async def scenario() -> tuple[list[Hashable], list[bool]]:
        fired: list[Hashable] = []
        three = asyncio.Event()

        async def fire(key: Hashable) -> None:
            fired.append(key)
            if len(fired) == 3:
                three.set()

        scheduler = DeadlineScheduler(fire, now)
        start = now()
        woken = []
        scheduler.arm("first", start + timedelta(milliseconds=60))
        woken.append(scheduler._changed.is_set())
        scheduler._changed.clear()
        scheduler.arm("later", start + timedelta(milliseconds=90))
        woken.append(scheduler._changed.is_set())
        scheduler.arm("sooner", start + timedelta(milliseconds=30))
        woken.append(scheduler._changed.is_set())
        scheduler._changed.clear()
        scheduler.cancel("sooner")
        scheduler.arm("after the cancelled head", start + timedelta(milliseconds=40))
        woken.append(scheduler._changed.is_set())
        task = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(three.wait(), timeout=5)
        task.cancel()
        return fired, woken

    fired, woken = asyncio.run(scenario())
    assert woken == [True, False, True, False]
    assert fired == ["after the cancelled head", "first", "later"]

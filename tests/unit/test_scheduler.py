import asyncio
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta

from handoff.controller.scheduler import DeadlineScheduler


def test_fires_due_keys_in_order_and_skips_cancelled_and_rearmed() -> None:
    async def scenario() -> list[Hashable]:
        fired: list[Hashable] = []

        async def fire(key: Hashable) -> None:
            fired.append(key)

        scheduler = DeadlineScheduler(fire, lambda: datetime.now(UTC))
        task = asyncio.create_task(scheduler.run())
        now = datetime.now(UTC)
        scheduler.arm("late", now + timedelta(milliseconds=80))
        scheduler.arm("early", now + timedelta(milliseconds=20))
        scheduler.arm("cancelled", now + timedelta(milliseconds=30))
        scheduler.cancel("cancelled")
        scheduler.arm("moved", now + timedelta(milliseconds=10))
        scheduler.arm("moved", now + timedelta(milliseconds=50))
        scheduler.arm("past", now - timedelta(seconds=5))
        await asyncio.sleep(0.3)
        task.cancel()
        assert len(scheduler) == 0
        return fired

    assert asyncio.run(scenario()) == ["past", "early", "moved", "late"]


def test_a_failing_handler_is_retried() -> None:
    async def scenario() -> int:
        calls = 0

        async def fire(key: Hashable) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("API server unreachable")

        scheduler = DeadlineScheduler(fire, lambda: datetime.now(UTC))
        task = asyncio.create_task(scheduler.run())
        scheduler.arm("k", datetime.now(UTC))
        await asyncio.sleep(1.4)
        task.cancel()
        return calls

    assert asyncio.run(scenario()) == 2

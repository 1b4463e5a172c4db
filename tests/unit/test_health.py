"""A part of the operator that fails shows: handler exceptions are counted and retried with a
growing wait, and a background task that dies is counted and makes /healthz fail."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from handoff.adapters import metrics
from handoff.adapters.kube import KubeError
from handoff.controller import handlers
from handoff.controller.runner import Health
from handoff.controller.scheduler import DeadlineScheduler
from handoff.controller.tasks import dead, start

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_background_task_that_dies_is_counted_and_fails_healthz(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> tuple[tuple[bool, str], tuple[bool, str], list[str]]:
        async def outcomes() -> None:
            raise KeyError("metadata")

        async def forever() -> None:
            await asyncio.Event().wait()

        async def finished() -> None:
            return  # like the reports writer on a cluster without PolicyReports

        memo = kopf.Memo(started=True)
        health = Health(memo, operator=asyncio.create_task(forever()))
        memo["tasks"] = [start("reports", finished()), start("scheduler", forever())]
        await asyncio.sleep(0.01)
        alive = health.live()
        memo["tasks"].append(start("outcomes", outcomes()))
        await asyncio.sleep(0.01)
        ill = health.live()
        broken = dead(memo["tasks"])
        for task in [*memo["tasks"], health.operator]:
            task.cancel()
        return alive, ill, broken

    before = sample("handoff_background_task_failures_total", task="outcomes")
    with caplog.at_level(logging.ERROR, "handoff.operator"):
        alive, ill, broken = asyncio.run(go())
    assert alive == (True, "leading")
    assert ill == (
        False,
        "background task outcomes (KeyError: 'metadata') died: see the log; restart me",
    )
    assert broken == ["outcomes (KeyError: 'metadata')"]
    assert sample("handoff_background_task_failures_total", task="outcomes") == before + 1
    assert "background task outcomes died: KeyError: 'metadata'" in caplog.text
    assert "Traceback" in caplog.text  # what a bug needs to be found


class Failing:
    """A request handler whose request handling raises what nothing expected."""

    def __init__(self) -> None:
        self.retries: list[tuple[str, str, timedelta]] = []
        self.owns = lambda _namespace: True
        self.requests = self

    async def changed(self, body: Any) -> None:
        raise TypeError("'str' object does not support item assignment")

    async def deleted(self, namespace: str, name: str, uid: str | None = None) -> None:
        pass

    def retry_soon(
        self, namespace: str, name: str, delay: timedelta = timedelta(seconds=2)
    ) -> None:
        self.retries.append((namespace, name, delay))


def test_a_handler_exception_is_counted_and_retried_with_a_growing_wait() -> None:
    reconciler = Failing()
    memo = kopf.Memo(operator=reconciler, failures={})
    body = {"metadata": {"namespace": "agents", "name": "req-1"}, "spec": {}}
    before = sample("handoff_handler_exceptions_total", handler="request")

    async def deliver(kind: str) -> None:  # the event, and the mailbox's pass over it
        handlers.request_event(memo, kind, body)
        await memo["mailbox"].idle()

    for _ in range(10):
        asyncio.run(deliver("MODIFIED"))
    assert sample("handoff_handler_exceptions_total", handler="request") == before + 10
    waits = [delay.total_seconds() for *_, delay in reconciler.retries]
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    asyncio.run(deliver("DELETED"))
    assert memo["failures"] == {}


def test_a_timer_handler_exception_is_counted_and_armed_again() -> None:
    fired: list[str] = []

    async def go() -> None:
        again = asyncio.Event()

        async def fire(key: Any) -> None:
            fired.append(key)
            if len(fired) == 1:
                raise RuntimeError("bug")
            again.set()

        scheduler = DeadlineScheduler(fire, lambda: NOW)
        runner = asyncio.create_task(scheduler.run())
        scheduler.arm("k", NOW)
        await again.wait()  # the retry comes 1s after the first failure
        runner.cancel()

    before = sample("handoff_handler_exceptions_total", handler="timer")
    asyncio.run(asyncio.wait_for(go(), 10))
    assert fired == ["k", "k"]
    assert sample("handoff_handler_exceptions_total", handler="timer") == before + 1


class FailingPolicies:
    """A policy reconciler whose API server is away."""

    def __init__(self) -> None:
        self.armed: list[tuple[Any, Any]] = []
        self.scheduler = self

    def arm(self, key: Any, when: Any) -> None:
        self.armed.append((key, when))

    async def changed(self, body: Any) -> None:
        raise KubeError(503, "the API server is unavailable")


def test_a_policy_handler_error_is_counted_and_retried_in_two_seconds() -> None:
    memo = kopf.Memo(policies=FailingPolicies(), operator=Failing(), failures={})
    body = kopf.Body({"metadata": {"namespace": "agents", "name": "payments"}, "spec": {}})
    before = sample("handoff_reconcile_errors_total", kind="policy")
    asyncio.run(handlers.policy_event("MODIFIED", body, memo))
    assert sample("handoff_reconcile_errors_total", kind="policy") == before + 1
    [(key, when)] = memo["policies"].armed
    assert key == ("agents", "payments")
    assert timedelta(seconds=1) < when - handlers.utcnow() <= timedelta(seconds=2)

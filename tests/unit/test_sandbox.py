"""The sandbox that evaluates rules' ``when`` out of the operator's event loop, in a child
process with a CPU budget per request: what it answers, how it fails closed, and that a costly
expression neither holds the event loop nor other agents' requests for long."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.adapters.sandbox import Sandbox, answers, by_source
from handoff.domain.classify import RequestFacts, classify, when_plan

from .helpers import AGENT, NS, policy

CROSS = "parameters.a.map(x, parameters.b).exists(l, l.exists(y, y == -1))"
LISTS = {"a": list(range(256)), "b": list(range(256))}  # the most admission lets through


def variables(**parameters: Any) -> dict[str, Any]:
    return {"action": "payments.refund", "target": "stripe:charge/ch_1", "agent": AGENT,
            "labels": {}, "parameters": parameters}  # fmt: skip


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    asyncio.run(box.close())


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_groups_are_answered_in_order_each_up_to_its_first_match_or_failure() -> None:
    async def go() -> dict[str, bool | str]:
        box = Sandbox()
        try:
            groups = [
                ("parameters.amount > 100", "parameters.amount <= 100", "never.evaluated"),
                ("parameters.missing == 1", "also.never"),
                ("parameters.amount == 50",),
            ]
            return await box.evaluate("agent", variables(amount=50), groups)
        finally:
            await box.close()

    found = run(go())
    assert found["parameters.amount > 100"] is False
    assert found["parameters.amount <= 100"] is True
    assert "no such key 'missing'" in str(found["parameters.missing == 1"])
    assert found["parameters.amount == 50"] is True
    assert "never.evaluated" not in found
    assert "also.never" not in found


def test_a_costly_expression_is_stopped_at_the_budget_and_the_loop_runs_meanwhile() -> None:
    async def go() -> tuple[dict[str, bool | str], int, dict[str, bool | str]]:
        box = Sandbox()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        try:
            await box.evaluate("agent", variables(), [("true",)])  # the child is up
            ticks = 0
            groups = [("parameters.a.size() == 0", CROSS, "true"), ("parameters.b.size() > 0",)]
            stopped = await box.evaluate("agent", variables(**LISTS), groups)
            seen = ticks
            after = await box.evaluate("agent", variables(**LISTS), [("size(parameters.a) > 1",)])
            return stopped, seen, after
        finally:
            ticker.cancel()
            await box.close()

    stopped, ticks, after = run(go())
    assert stopped["parameters.a.size() == 0"] is False
    assert str(stopped[CROSS]).startswith(f"{CROSS!r} exceeded the evaluation budget (100 ms")
    assert "true" not in stopped  # the group stops at the expression that failed
    assert "an earlier `when` was stopped" in str(stopped["parameters.b.size() > 0"])
    assert ticks > 10  # the event loop kept running while the child worked
    assert after == {"size(parameters.a) > 1": True}  # a new child took over


def test_classification_with_a_spent_budget_fails_closed_and_says_so() -> None:
    rule = {"name": "cross", "actions": ["payments.*"], "tier": 1, "when": CROSS}
    policies = [policy(rules=[rule], defaultTier=1)]
    facts = RequestFacts(NS, AGENT, "payments.refund", parameters=LISTS)

    async def go() -> dict[str, bool | str]:
        box = Sandbox()
        try:
            return await box.evaluate("agent", facts.variables(), when_plan(policies, facts))
        finally:
            await box.close()

    results = run(go())
    verdict = classify(policies, RequestFacts(**{**facts.__dict__, "results": results})).verdict
    assert verdict is not None
    assert (verdict.tier, verdict.fail_closed) == (4, True)
    assert "exceeded the evaluation budget" in verdict.message
    assert verdict.message.endswith("tier 4 (fail closed)")


def test_one_agents_costly_requests_do_not_hold_another_agents_request_behind_them() -> None:
    async def go() -> list[str]:
        box = Sandbox()
        done: list[str] = []

        async def ask(agent: str, label: str, source: str, parameters: dict[str, Any]) -> None:
            await box.evaluate(agent, variables(**parameters), [(source,)])
            done.append(label)

        try:
            await box.evaluate("warm", variables(), [("true",)])
            costly = [ask("hostile", f"hostile-{i}", CROSS, LISTS) for i in range(3)]
            tasks = [asyncio.create_task(c) for c in costly]
            await asyncio.sleep(0)  # the hostile agent's three are queued first
            tasks.append(asyncio.create_task(ask("honest", "honest", "true", {})))
            await asyncio.gather(*tasks)
            return done
        finally:
            await box.close()

    done = run(go())
    assert done.index("honest") < done.index("hostile-2"), done


def test_values_too_deep_to_encode_fail_closed_without_the_child() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = {"x": deep}

    async def go() -> dict[str, bool | str]:
        box = Sandbox()
        try:
            return await box.evaluate("agent", variables(n=deep), [("true", "false")])
        finally:
            await box.close()

    found = run(go())
    assert found == {
        "true": "'true' could not be evaluated: the request's values nest deeper than 100 levels",
        "false": "'false' could not be evaluated: the request's values nest deeper than 100 levels",
    }


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"memory": 8 << 20}, "the evaluator stopped (exit status "),
        ({"wall": 0.001}, "the evaluator did not answer within 0s"),
    ],
)
def test_a_child_that_cannot_answer_fails_closed(settings: dict[str, Any], complaint: str) -> None:
    async def go() -> dict[str, bool | str]:
        box = Sandbox(**settings)
        try:
            return await box.evaluate("agent", variables(), [("true",)])
        finally:
            await box.close()

    found = run(go())
    assert list(found) == ["true"]
    assert str(found["true"]).startswith(f"'true' could not be evaluated: {complaint}")


def test_by_source_reads_answers_as_the_child_gives_them() -> None:
    groups = [("a", "b"), ("c",)]
    given = {(g, i): answer for g, i, answer in answers({}, [("false", "true")])}
    assert given == {(0, 0): False, (0, 1): True}
    assert by_source(groups, {(0, 0): False}, "budget", 0.1) == {
        "a": False,
        "b": "'b' exceeded the evaluation budget (100 ms of CPU for a request's `when`"
        " expressions) and was stopped",
        "c": "'c' was not evaluated: an earlier `when` was stopped",
    }

"""The operator evaluates rules' ``when`` beforehand, in the sandbox, from ``when_plan``; the
classification that reads those answers must be the one that evaluates in process, for any
policies and request (the plan must name every expression classification reaches)."""

from dataclasses import replace

import pytest
from handoff.adapters.sandbox import answers, by_source
from handoff.domain.classify import RequestFacts, classify, when_plan
from handoff.domain.model import RequestState
from handoff.domain.policy import CompiledPolicy, compile_policy
from hypothesis import given

from .test_properties import FAST, compiled_policies, requests


def beforehand(policies: list[CompiledPolicy], facts: RequestFacts) -> RequestFacts:
    groups = when_plan(policies, facts)
    given_answers = {(g, i): a for g, i, a in answers(facts.variables(), groups)}
    return replace(facts, results=by_source(groups, given_answers, None, 0.1))


@FAST
@given(compiled_policies(), requests())
def test_answers_from_the_plan_classify_as_evaluating_in_process(
    policies: list[CompiledPolicy], state: RequestState
) -> None:
    in_process = classify(policies, state.facts)
    planned = classify(policies, beforehand(policies, state.facts))
    assert planned == in_process


def test_the_plan_stops_at_the_first_rule_without_a_when() -> None:
    rules = [
        {"name": "a", "actions": ["x.*"], "tier": 3, "when": "parameters.n > 1"},
        {"name": "b", "actions": ["x.y"], "tier": 2, "targets": ["prod:*"], "when": "false"},
        {"name": "c", "actions": ["x.y"], "tier": 1},
        {"name": "d", "actions": ["x.y"], "tier": 4, "when": "true"},
    ]
    spec = {"agents": {"serviceAccounts": ["bot"]}, "rules": rules}
    policy = compile_policy("ns", "p", spec)  # type: ignore[arg-type]
    facts = RequestFacts("ns", "bot", "x.y", target="test:1")
    assert when_plan([policy], facts) == [("parameters.n > 1",)]
    assert when_plan([policy], RequestFacts("ns", "someone-else", "x.y")) == []


def plan_policy(
    name: str, *rules: dict[str, object], agent: str = "bot", **spec: object
) -> CompiledPolicy:
    body = {"agents": {"serviceAccounts": [agent]}, "rules": list(rules)} | spec
    return compile_policy("ns", name, body)  # type: ignore[arg-type]


WHEN_A = {"name": "a", "actions": ["x.y"], "tier": 3, "when": "parameters.n > 1"}
WHEN_B = {"name": "b", "actions": ["x.y"], "tier": 4, "when": "parameters.n > 2"}
ELSEWHERE = {"name": "e", "actions": ["x.y"], "tier": 4, "targets": ["prod:*"], "when": "true"}
BROKEN = {"name": "z", "actions": ["x.y"], "tier": 9}


# Each row: policies (evaluated by name), and the plan for bot's x.y on test:1. A policy that does
# not govern bot, or is not Ready, adds nothing and ends nothing; a rule whose targets do not
# match is passed over, not an end.
@pytest.mark.parametrize(
    ("policies", "plan"),
    [
        ([plan_policy("p", WHEN_A)], [("parameters.n > 1",)]),
        ([plan_policy("a", WHEN_B, agent="other"), plan_policy("p", WHEN_A)], [("parameters.n > 1",)]),
        ([plan_policy("a", WHEN_B, BROKEN), plan_policy("p", WHEN_A)], [("parameters.n > 1",)]),
        ([plan_policy("p", ELSEWHERE, WHEN_A, WHEN_B)], [("parameters.n > 1", "parameters.n > 2")]),
        ([plan_policy("p", WHEN_A), plan_policy("q", ELSEWHERE, WHEN_B)],
         [("parameters.n > 1",), ("parameters.n > 2",)]),
    ],
)  # fmt: skip
def test_what_the_plan_passes_over(
    policies: list[CompiledPolicy], plan: list[tuple[str, ...]]
) -> None:
    facts = RequestFacts("ns", "bot", "x.y", target="test:1")
    assert when_plan(policies, facts) == plan

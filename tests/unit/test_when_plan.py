"""The operator evaluates rules' ``when`` beforehand, in the sandbox, from ``when_plan``; the
classification that reads those answers must be the one that evaluates in process, for any
policies and request (the plan must name every expression classification reaches)."""

from dataclasses import replace

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

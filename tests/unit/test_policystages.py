"""Approval stages as a policy declares them (domain/policystages.py), compiled: each stage's
value and each problem's exact words, beside test_stages.py's whole policies."""

from typing import Any

import pytest
from handoff.domain.policy import compile_policy
from handoff.domain.policyparts import ChecklistItem, Reviewers
from handoff.domain.policystages import MAX_STAGES, Stage, compile_stages

X = {"users": ["x"]}


def stage(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "reviewers": X, **extra}


@pytest.mark.parametrize(
    ("raw", "stages", "errors"),
    [
        # a broken approvals count is reported, and the stage keeps one approval meanwhile
        ([stage("a", approvals=0)], (Stage("a", Reviewers(frozenset({"x"})), 1),),
         ["lane.stages[a].approvals must be at least 1, not 0"]),
        ([stage("a", approvals=-3)], (Stage("a", Reviewers(frozenset({"x"})), 1),),
         ["lane.stages[a].approvals must be at least 1, not -3"]),
        # a stage's checklist problems name the stage
        ([stage("a", checklist=[{"id": "i", "text": "one"}, {"id": "i", "text": "two"}])],
         (Stage("a", Reviewers(frozenset({"x"})), 1,
                (ChecklistItem("i", "one"), ChecklistItem("i", "two"))),),
         ["lane.stages[a]: checklist ids must be unique"]),
        # as many stages as the bound is fine; one more is not
        ([stage(f"s{i}") for i in range(MAX_STAGES)],
         tuple(Stage(f"s{i}", Reviewers(frozenset({"x"}))) for i in range(MAX_STAGES)), []),
        ([stage(f"s{i}") for i in range(MAX_STAGES + 1)],
         tuple(Stage(f"s{i}", Reviewers(frozenset({"x"}))) for i in range(MAX_STAGES + 1)),
         ["lane: at most 5 stages, not 6"]),
    ],
)  # fmt: skip
def test_compile_stages(raw: Any, stages: tuple[Stage, ...], errors: list[str]) -> None:
    found: list[str] = []
    assert compile_stages(raw, "lane", found) == stages
    assert found == errors


def policy_with(rule: dict[str, Any], tier3: dict[str, Any] | None = None) -> Any:
    spec = {"agents": {"serviceAccounts": ["a"]}, "tiers": {"tier3": tier3 or {}},
            "rules": [{"name": "r", "actions": ["x.*"], **rule}]}  # fmt: skip
    return compile_policy("ns", "p", spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rule", "tier3", "errors", "stages"),
    [
        ({"tier": 4, "stages": [{"name": "a"}]}, None,
         ("rule 'r'.stages[a] names no reviewers: nobody could approve it",),
         (Stage("a", Reviewers()),)),
        ({"tier": 2, "stages": [stage("a")]}, None,
         ("rule 'r': stages are for tier 3 (HITL) and tier 4 rules",), None),
        ({"tier": 3, "stages": [stage("a")]}, {"oversight": "HOTL"},
         ("rules with stages at tier 3 need a HITL tier 3 lane (tiers.tier3.oversight)",),
         (Stage("a", Reviewers(frozenset({"x"}))),)),
        ({"tier": 4}, None, (), None),
    ],
)  # fmt: skip
def test_a_rules_stages(
    rule: dict[str, Any], tier3: dict[str, Any] | None, errors: tuple[str, ...], stages: Any
) -> None:
    policy = policy_with(rule, tier3)
    assert policy.errors == errors
    [compiled] = policy.rules
    assert compiled.stages == stages

"""Approval stages as a policy declares them (domain/policystages.py), compiled: each stage's
value and each problem's exact words, beside test_stages.py's whole policies."""

from typing import Any

import pytest
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

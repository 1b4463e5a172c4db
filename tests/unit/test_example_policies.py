"""Every example under policies/ compiles, lints without errors, and its tests.yaml cases hold."""

from pathlib import Path

import pytest
from handoff.policytools.checks import CaseResult, lint, run_cases
from handoff.policytools.loading import PolicyFile, load_cases, load_policies

ROOT = Path(__file__).resolve().parents[2] / "policies"
POLICIES = load_policies([ROOT])
CASES = load_cases([ROOT])


def test_there_are_examples_with_cases() -> None:
    assert POLICIES, "policies/ should hold at least one example"
    assert CASES, "every example should have tests.yaml cases"


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.path.parent.name}/{p.name}")
def test_every_example_compiles_and_has_no_lint_errors(policy: PolicyFile) -> None:
    assert policy.compiled().ready, policy.compiled().errors
    assert [str(f) for f in lint([policy], []) if f.severity == "error"] == []


@pytest.mark.parametrize(
    "result", run_cases(POLICIES, CASES), ids=lambda r: f"{r.case.path.parent.name}: {r.case.name}"
)
def test_example_case(result: CaseResult) -> None:
    assert result.failures == ()

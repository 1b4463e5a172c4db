"""handoff policy lint warns about a lenient rule that bounds an agent's number from above only
(issue 14, item 12: `parameters.amount <= 100` took an amount of -1000000000 as a small refund)."""

from pathlib import Path

import pytest
import yaml
from handoff.cli.main import main
from handoff.policytools.bounds import one_sided


def rule(when: str, tier: int = 3) -> dict[str, object]:
    return {"name": "small", "actions": ["payments.refund"], "when": when, "tier": tier}


@pytest.mark.parametrize(
    ("when", "paths"),
    [
        ("parameters.amount <= 100", ["parameters.amount"]),
        ("parameters.amount < 100", ["parameters.amount"]),
        ("100 >= parameters.amount", ["parameters.amount"]),
        ("parameters['amount'] <= 1e2", ["parameters['amount']"]),
        ("parameters.amount <= 100 && parameters.fee < 5 && parameters.fee >= 0",
         ["parameters.amount"]),
        # Bounded from both sides, or not a plain comparison with a number: nothing to say.
        ("parameters.amount > 0 && parameters.amount <= 100", []),
        ("0 < parameters.amount && parameters.amount <= 100", []),
        ("parameters.amount >= 1 && 100 >= parameters.amount", []),
        ("size(parameters.items) < 10", []),
        ("parameters.amount <= parameters.limit", []),
        ("parameters.amount == 5", []),
        ("parameters.currency == 'USD'", []),
    ],
)  # fmt: skip
def test_one_sided_numeric_bounds(when: str, paths: list[str]) -> None:
    found = one_sided([rule(when)])
    assert [message.split(" bounds ")[1].split(" from")[0] for _, message in found] == paths


def test_strict_rules_are_not_flagged() -> None:
    assert one_sided([rule("parameters.amount <= 100", tier=4)]) == []
    assert one_sided([{"name": "plain", "actions": ["x"], "tier": 1}]) == []


def test_lint_prints_it_as_a_warning_on_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "AgentActionPolicy",
        "metadata": {"name": "payments", "namespace": "agents"},
        "spec": {"agents": {"serviceAccounts": ["payments-agent"]},
                 "reviewers": {"groups": ["payments-approvers"]},
                 "rules": [rule("parameters.amount <= 100")]},
    }  # fmt: skip
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    assert main(["policy", "lint", str(tmp_path)]) == 0  # a warning, not an error
    out = capsys.readouterr().out
    assert (
        "warning: rule 'small' (tier 3) bounds parameters.amount from above only: an agent's"
        " parameters.amount of -1000000000 matches it too" in out
    )

"""Policy tooling knows grantability: lint flags grantable tier-4 rules, diff shows a rule that
became grantable (or stopped being), explain says for how long and how many a rule may be
granted; and the grant a reviewer makes while approving (review/grants.py) is the request's
exact shape unless the reviewer names a pattern."""

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff.cli import kubectl_plugin
from handoff.domain.grants import Grant
from handoff.review.client import ReviewError
from handoff.review.grants import grant_document, grant_rows, state

from .test_policytools import BASE, CASES, handoff, variant, write

GRANTABLE = {"maxDuration": "4h", "maxCount": 20}


def test_lint_flags_a_grantable_tier_4_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = variant(rules=[
        {"name": "refunds", "actions": ["payments.refund"], "tier": 3, "grantable": GRANTABLE},
        {"name": "money", "actions": ["payments.*"], "tier": 4, "grantable": GRANTABLE},
    ])  # fmt: skip
    folder = write(tmp_path / "p", policy)
    code, out = handoff("policy", "lint", str(folder), capsys=capsys)
    assert code == 0
    flagged = [line for line in out.splitlines() if "grantable" in line]
    assert len(flagged) == 1
    assert "rule 'money' is tier 4 and grantable" in flagged[0]


def test_lint_flags_a_grantable_rule_whose_requests_take_several_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stages = [{"name": "manager", "reviewers": {"users": ["alice"]}},
              {"name": "finance", "reviewers": {"users": ["carol"]}}]  # fmt: skip
    # The lane's approvals count unless the rule names its own (the classifier's lane, as the
    # requests are decided in it).
    policy = variant(tiers={"tier3": {"approvals": 2}}, rules=[
        {"name": "staged", "actions": ["payments.refund"], "tier": 4, "stages": stages,
         "grantable": GRANTABLE},
        {"name": "two", "actions": ["payments.charge"], "tier": 3, "approvals": 2,
         "grantable": GRANTABLE},
        {"name": "lane", "actions": ["payments.void"], "tier": 3, "grantable": GRANTABLE},
        {"name": "own", "actions": ["payments.quote"], "tier": 3, "approvals": 1,
         "grantable": GRANTABLE},
    ])  # fmt: skip
    folder = write(tmp_path / "p", policy)
    code, out = handoff("policy", "lint", str(folder), capsys=capsys)
    assert code == 0
    assert "rule 'staged' is grantable, but its requests are approved in stages (manager," in out
    assert "rule 'two' is grantable, but its requests need 2 approvals: a grant is one" in out
    assert "rule 'lane' is grantable, but its requests need 2 approvals" in out
    assert "rule 'own' is grantable, but" not in out


def test_diff_and_explain_show_grantability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path / "old", BASE, CASES)
    granted = variant(rules=[{"name": "reads", "actions": ["db.query"], "tier": 1},
                             {"name": "money", "actions": ["payments.*"], "tier": 4,
                              "grantable": {"maxDuration": "1h", "maxCount": 5}}])  # fmt: skip
    new = write(tmp_path / "new", granted, CASES)
    code, out = handoff("policy", "diff", str(old), str(new), capsys=capsys)
    assert code == 0
    assert "1 of 2 sample requests change" in out
    after = next(line for line in out.splitlines() if "after" in line)
    assert "payments/money (grantable 1h, 5 uses)" in after
    request = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
               "metadata": {"namespace": "agents"},
               "spec": {"agent": "payments-agent", "action": "payments.refund", "summary": "r"}}  # fmt: skip
    (tmp_path / "request.yaml").write_text(yaml.safe_dump(request))
    text = io.StringIO()
    kubectl_plugin.main(["explain", "-f", str(tmp_path / "request.yaml"), "--policies",
                         str(tmp_path / "new")], out=text)  # fmt: skip
    assert ", grantable for at most 1h, 5 uses;" in text.getvalue()


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REQUEST: dict[str, Any] = {
    "metadata": {"namespace": "agents", "name": "refund-1"},
    "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_[1]*"},
    "status": {"policy": "payments", "rule": "small-refunds"},
}


def test_the_grant_made_while_approving() -> None:
    document = grant_document(REQUEST, "alice", "1h30m", 5, NOW)
    assert document == {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionGrant",
        "metadata": {"generateName": "refund-1-", "namespace": "agents"},
        "spec": {"grantedBy": "alice", "agent": "payments-agent", "action": "payments.refund",
                 "policy": "payments", "rule": "small-refunds", "target": "stripe:ch_[[]1][*]",
                 "expiresAt": "2026-12-01T13:30:00Z", "maxUses": 5, "request": "refund-1"},
    }  # fmt: skip
    wider = grant_document(REQUEST, "alice", "10m", 1, NOW, target="stripe:*", condition="c")
    assert (wider["spec"]["target"], wider["spec"]["condition"]) == ("stripe:*", "c")
    body = document | {"metadata": {"name": "g", "namespace": "agents",
                                    "creationTimestamp": "2026-12-01T12:00:00Z"}}  # fmt: skip
    grant = Grant.from_json(body)
    assert grant.target.matches("stripe:ch_[1]*")
    assert not grant.target.matches("stripe:ch_1x")
    assert state(grant, NOW) == "Active"
    assert grant_rows([body, {"metadata": {}}], NOW) == [(
        "agents", "g", "Active", "alice", "payments-agent", "payments.refund",
        "stripe:ch_[[]1][*]", "0/5", "2026-12-01T13:30:00Z", "1h30m", "",
    )]  # fmt: skip


@pytest.mark.parametrize(
    ("duration", "count", "body", "message"),
    [
        ("soon", 1, REQUEST, "--grant 'soon' is not a duration"),
        ("0s", 1, REQUEST, "--grant needs a duration longer than 0s"),
        ("1h", 0, REQUEST, "--count must be 1 to 1000, not 0"),
        ("1h", 1001, REQUEST, "--count must be 1 to 1000, not 1001"),
        ("1h", 1, REQUEST | {"status": {"policy": "payments"}},
         "refund-1 matched no rule of its policy: nothing to grant"),
    ],
)  # fmt: skip
def test_a_grant_that_cannot_be_is_refused_before_anything_is_written(
    duration: str, count: int, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ReviewError, match=message.replace("(", r"\(")):
        grant_document(body, "alice", duration, count, NOW)

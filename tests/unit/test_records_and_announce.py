"""What a status implies for the streams and the webhooks, and how agents' outcomes land."""

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
from handoff.adapters.webhooks import signature
from handoff.domain.announce import package, slack
from handoff.domain.execution import execution_patch
from handoff.domain.records import records
from handoff.domain.report import policy_report, result_of

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def body(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "agents", "name": "refund-1", "uid": "u-1"},
        "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_1",
                 "summary": "Refund $5", "stateRef": "handoff:state:agents:payments-agent:p1"} | spec,
        "status": status,
    }  # fmt: skip


WAITING = {
    "phase": "AwaitingApproval",
    "tier": 4,
    "oversight": "HITL",
    "deadline": "2026-11-29T18:15:00Z",
}


def test_an_unclassified_request_implies_nothing() -> None:
    assert records(body({}), "handoff:audit") == []


def test_a_waiting_request_implies_one_audit_line_and_each_review_one_more() -> None:
    reviews = [
        {"reviewer": "alice", "decision": "Approve"},
        {"reviewer": "bob", "decision": "Deny", "comment": "no"},
    ]
    found = records(body(WAITING | {"reviews": reviews}), "handoff:audit")
    assert [(r.stream, r.dedup, r.fields["event"]) for r in found] == [
        ("handoff:audit", "phase:AwaitingApproval", "AwaitingApproval"),
        ("handoff:audit", "review:0", "Reviewed"),
        ("handoff:audit", "review:1", "Reviewed"),
    ]
    assert found[2].fields["by"] == "bob"
    assert found[2].fields["message"] == "no"


def test_a_decision_goes_to_the_audit_and_to_the_agents_stream() -> None:
    decision = {
        "outcome": "Approved",
        "reason": "HumanApproved",
        "by": ["alice"],
        "at": "t",
        "message": "ok",
    }
    found = records(
        body(WAITING | {"phase": "Approved", "decision": decision, "specDigest": "sha256:x"}),
        "handoff:audit",
    )
    assert [r.dedup for r in found] == ["phase:AwaitingApproval", "phase:Approved", "decision"]
    message = found[-1]
    assert message.stream == "handoff:decisions:agents:payments-agent"
    assert message.fields["outcome"] == "Approved"
    assert message.fields["by"] == "alice"
    assert message.fields["stateRef"] == "handoff:state:agents:payments-agent:p1"
    assert message.fields["specDigest"] == "sha256:x"


def test_a_tier1_decision_has_no_waiting_line() -> None:
    decision = {"outcome": "Approved", "reason": "AutoApproved"}
    found = records(
        body({"phase": "Approved", "tier": 1, "oversight": "HOOTL", "decision": decision}), "a"
    )
    assert [r.dedup for r in found] == ["phase:Approved", "decision"]


@pytest.mark.parametrize(
    ("status", "outcome", "expected"),
    [
        ({"decision": {"outcome": "Approved"}}, "Executed", "Executed"),
        ({"decision": {"outcome": "Approved"}}, "Failed", "Failed"),
        ({"decision": {"outcome": "Denied"}}, "Executed", None),
        ({}, "Executed", None),
        (
            {"decision": {"outcome": "Approved"}, "execution": {"outcome": "Executed"}},
            "Failed",
            None,
        ),
        ({"decision": {"outcome": "Approved"}}, "Exploded", None),
    ],
)
def test_execution_patch(status: dict[str, Any], outcome: str, expected: str | None) -> None:
    patch = execution_patch(status, outcome, "what happened", NOW)
    assert (patch["phase"] if patch else None) == expected
    if patch:
        assert patch["execution"] == {
            "outcome": expected,
            "message": "what happened",
            "at": "2026-11-29T18:00:00Z",
        }


def test_the_package_carries_what_why_blast_radius_rollback_deadline_and_link() -> None:
    document = package(
        body(WAITING | {"escalation": {"at": "x", "to": ["sre-oncall"]}}, reasoning="charged twice",
             blastRadius="$5", rollback={"description": "charge again"}),
        "Pending",
        "https://handoff.example/",
    )  # fmt: skip
    assert document["what"] == "Refund $5"
    assert document["why"] == "charged twice"
    assert document["blastRadius"] == "$5"
    assert document["rollback"] == "charge again"
    assert document["deadline"] == "2026-11-29T18:15:00Z"
    assert document["link"] == "https://handoff.example/requests/agents/refund-1"
    assert document["escalateTo"] == ["sre-oncall"]


OPS = {"name": "ops", "reviewers": {"users": ["bob"], "groups": []}}
SECURITY = {"name": "security", "reviewers": {"users": [], "groups": ["sec"]}}


# Each row: the status's stage fields, and the stage and its reviewers the package names (an
# announcement goes to them), or None when the package has no stage keys at all.
@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ({}, None),
        ({"stage": "", "stages": [OPS]}, None),
        ({"stage": "security", "stages": [OPS, SECURITY]},
         ("security", {"users": [], "groups": ["sec"]})),
        ({"stage": "ops", "stages": [OPS, SECURITY]}, ("ops", {"users": ["bob"], "groups": []})),
        ({"stage": "legal", "stages": [OPS, SECURITY]}, ("legal", {})),  # not among its stages
        ({"stage": "ops"}, ("ops", {})),
        ({"stage": "ops", "stages": None}, ("ops", {})),
        ({"stage": "ops", "stages": [{"name": "ops", "reviewers": None}]}, ("ops", {})),
        ({"stage": "ops", "stages": [{"name": "ops"}]}, ("ops", {})),
    ],
)  # fmt: skip
def test_the_package_names_the_open_stage_and_its_reviewers(
    stage: dict[str, Any], expected: tuple[str, dict[str, Any]] | None
) -> None:
    document = package(body(WAITING | stage), "Pending", None)
    if expected is None:
        assert "stage" not in document
        assert "stageReviewers" not in document
    else:
        assert (document["stage"], document["stageReviewers"]) == expected


def test_slack_messages_cannot_ping_or_fake_links() -> None:
    hostile = body(WAITING, summary="<!channel> approve <https://evil.example|the ticket> & more")
    message = slack(package(hostile, "Pending", None))
    assert "<!channel>" not in message["text"]
    assert "&lt;!channel&gt;" in message["text"]
    assert "&amp; more" in message["text"]
    assert all(f["type"] == "plain_text" for f in message["blocks"][1]["fields"])


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    expected = hmac.new(b"k", b"123.{}", hashlib.sha256).hexdigest()
    assert signature(b"k", "123", b"{}") == f"sha256={expected}"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, None),
        ({"decision": {"outcome": "Approved", "reason": "AutoApproved"}}, "pass"),
        ({"decision": {"outcome": "Denied", "reason": "HumanDenied"}}, "fail"),
        ({"decision": {"outcome": "Denied", "reason": "Expired"}}, "warn"),
        ({"decision": {"outcome": "Approved"}, "phase": "RolledBack"}, "warn"),
        ({"decision": {"outcome": "Approved"}, "execution": {"outcome": "Failed"}}, "error"),
    ],
)
def test_policy_report_results(status: dict[str, Any], expected: str | None) -> None:
    assert result_of(body(status)) == expected


def test_policy_report_summarises_an_agents_decisions() -> None:
    decided = body(WAITING | {"phase": "Denied", "policy": "payments", "rule": "money",
                             "decision": {"outcome": "Denied", "reason": "Expired", "at": "2026-11-29T18:15:00Z"}})  # fmt: skip
    report = policy_report("agents", "payments-agent", [decided, body(WAITING)])
    assert report["summary"] == {"pass": 0, "fail": 0, "warn": 1, "error": 0, "skip": 0}
    [result] = report["results"]
    assert (result["policy"], result["rule"], result["severity"]) == (
        "agents/payments",
        "money",
        "high",
    )
    assert result["resources"][0]["name"] == "refund-1"

"""What leaves the operator, whole: the webhook package, the Slack message, the PolicyReport and
the audit and decision records. Each row compares the entire document, so a renamed key, a
dropped field or a changed default fails here before a receiver notices."""

from datetime import UTC, datetime
from typing import Any

import pytest
from handoff.domain.announce import package, slack
from handoff.domain.execution import execution_patch
from handoff.domain.records import Record, records
from handoff.domain.report import MAX_RESULTS, policy_report, result_of

META = {"namespace": "agents", "name": "refund-1", "uid": "u-1",
        "creationTimestamp": "2026-11-29T17:59:00Z"}  # fmt: skip
SPEC = {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_1",
        "summary": "Refund $5", "reasoning": "charged twice", "blastRadius": "$5 leaves",
        "rollback": {"description": "charge again"}, "stateRef": "handoff:state:p1"}  # fmt: skip
WAITING = {"phase": "AwaitingApproval", "tier": 4, "oversight": "HITL", "policy": "payments",
           "rule": "money", "deadline": "2026-11-29T18:15:00Z", "requiredApprovals": 2,
           "checklist": [{"id": "what", "text": "I read it"}, {"id": "undo", "text": "I can undo it"}],
           "escalation": {"at": "2026-11-29T18:05:00Z", "to": ["sre-oncall", "cto"]}}  # fmt: skip
DECISION = {"outcome": "Approved", "reason": "HumanApproved", "by": ["alice", "bob"],
            "at": "2026-11-29T18:03:00Z", "message": "approved by alice, bob"}  # fmt: skip


def body(status: dict[str, Any], meta: dict[str, Any] = META, **spec: Any) -> dict[str, Any]:
    return {"metadata": dict(meta), "spec": SPEC | spec, "status": status}


# -- the webhook package ------------------------------------------------------------------------

FULL_PACKAGE = {
    "event": "Pending",
    "request": {"namespace": "agents", "name": "refund-1", "uid": "u-1"},
    "agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_1",
    "what": "Refund $5", "why": "charged twice", "blastRadius": "$5 leaves",
    "rollback": "charge again", "tier": 4, "oversight": "HITL", "policy": "payments",
    "rule": "money", "deadline": "2026-11-29T18:15:00Z", "requiredApprovals": 2,
    "checklist": ["I read it", "I can undo it"], "escalateTo": ["sre-oncall", "cto"],
    "decision": None, "link": "https://handoff.example/requests/agents/refund-1",
}  # fmt: skip
EMPTY_PACKAGE = {
    "event": "Decided", "request": {"namespace": None, "name": None, "uid": None},
    "agent": None, "action": None, "target": None, "what": None, "why": None,
    "blastRadius": None, "rollback": None, "tier": None, "oversight": None, "policy": None,
    "rule": None, "deadline": None, "requiredApprovals": None, "checklist": [],
    "escalateTo": [], "decision": None, "link": None,
}  # fmt: skip


@pytest.mark.parametrize(
    ("document", "event", "console", "expected"),
    [
        (body(WAITING), "Pending", "https://handoff.example/", FULL_PACKAGE),
        (body(WAITING), "Pending", "https://handoff.example", FULL_PACKAGE),
        (body(WAITING), "Pending", "https://h.example/X/", FULL_PACKAGE | {
            "link": "https://h.example/X/requests/agents/refund-1"}),
        (body(WAITING), "Pending", None, FULL_PACKAGE | {"link": None}),
        (body(WAITING), "Pending", "", FULL_PACKAGE | {"link": None}),
        (body(WAITING | {"decision": DECISION}), "Decided", None,
         FULL_PACKAGE | {"event": "Decided", "decision": DECISION, "link": None}),
        ({}, "Decided", None, EMPTY_PACKAGE),
        ({"metadata": None, "spec": None, "status": None}, "Decided", None, EMPTY_PACKAGE),
    ],
)  # fmt: skip
def test_the_webhook_package_whole(
    document: dict[str, Any], event: str, console: str | None, expected: dict[str, Any]
) -> None:
    assert package(document, event, console) == expected


# -- the Slack message --------------------------------------------------------------------------


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def message(headline: str, what: str = "Refund $5", link: str | None = None) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(headline)},
        {"type": "section", "fields": [
            plain(f"What: {what}"), plain("Why: charged twice"), plain("Blast radius: $5 leaves"),
            plain("Rollback: charge again"), plain("Agent: payments-agent"),
            plain("Deadline: 2026-11-29T18:15:00Z"),
        ]},
    ]  # fmt: skip
    if link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": plain("Review"), "url": link}]})  # fmt: skip
    return {"text": f"{headline}: {what}", "blocks": blocks}


@pytest.mark.parametrize(
    ("event", "change", "expected"),
    [
        ("Pending", {}, message("Tier 4 request waits for review")),
        ("Pending", {"link": "https://h.example/r"},
         message("Tier 4 request waits for review", link="https://h.example/r")),
        ("Escalated", {}, message("Still undecided: escalated to sre-oncall, cto")),
        ("Escalated", {"escalateTo": []}, message("Still undecided: escalated")),
        ("Decided", {"decision": DECISION}, message("Decided: Approved")),
        ("Decided", {"decision": {}}, message("Decided: ")),
        ("Decided", {}, message("Decided: ")),
        ("Reminder", {}, message("Reminder")),
    ],
)  # fmt: skip
def test_the_slack_message_whole(event: str, change: dict[str, Any], expected: Any) -> None:
    document = FULL_PACKAGE | {"event": event, "link": None} | change
    assert slack(document) == expected


def test_slack_says_what_is_not_given_and_escapes_only_the_summary_line() -> None:
    document = FULL_PACKAGE | {"what": "a & <b>", "why": None, "rollback": "", "link": ""}
    sent = slack(document)
    assert sent["text"] == "Tier 4 request waits for review: a &amp; &lt;b&gt;"
    fields = [f["text"] for f in sent["blocks"][1]["fields"]]
    assert fields[:4] == ["What: a & <b>", "Why: (not given)", "Blast radius: $5 leaves",
                          "Rollback: (not given)"]  # fmt: skip
    assert len(sent["blocks"]) == 2  # no link, no button
    zero = slack(FULL_PACKAGE | {"what": 0})
    assert zero["blocks"][1]["fields"][0]["text"] == "What: 0"  # 0 is given


@pytest.mark.parametrize(
    ("what", "event", "header", "text", "field"),
    [
        ("x" * 1995, "E" * 150, 150, 150 + 2 + 1995, 2000),
        ("x" * 1994, "E" * 151, 150, 151 + 2 + 1994, 2000),
        ("x" * 4000, "E" * 10, 10, 3000, 2000),
        ("x" * 2987, "E" * 10, 10, 2999, 1999 + 1),
    ],
)
def test_slack_lengths_stay_within_slacks_limits(
    what: str, event: str, header: int, text: int, field: int
) -> None:
    sent = slack(FULL_PACKAGE | {"event": event, "what": what})
    assert len(sent["blocks"][0]["text"]["text"]) == header
    assert len(sent["text"]) == text
    assert len(sent["blocks"][1]["fields"][0]["text"]) == field


# -- the PolicyReport ---------------------------------------------------------------------------


def decided(name: str, at: str | None, *, tier: Any = 4, **status: Any) -> dict[str, Any]:
    decision = {"outcome": "Approved", "reason": "HumanApproved", "by": ["alice", "bob"],
                "message": "approved by alice, bob"} | ({"at": at} if at else {})  # fmt: skip
    body = {"metadata": {"name": name, "uid": f"u-{name}", "creationTimestamp": "2026-11-29T17:00:00Z"},
            "spec": {"agent": "payments-agent", "action": "payments.refund"},
            "status": {"phase": "Approved", "tier": tier, "policy": "payments", "rule": "money",
                       "decision": decision} | status}  # fmt: skip
    if tier is None:
        del body["status"]["tier"]
    return body


REPORT = {
    "apiVersion": "wgpolicyk8s.io/v1alpha2",
    "kind": "PolicyReport",
    "metadata": {
        "name": "handoff-payments-agent",
        "namespace": "agents",
        "labels": {"app.kubernetes.io/managed-by": "handoff",
                   "handoff.dev/agent": "payments-agent"},
    },
    "scope": {"apiVersion": "v1", "kind": "ServiceAccount", "name": "payments-agent",
              "namespace": "agents"},
    "summary": {"pass": 2, "fail": 0, "warn": 0, "error": 0, "skip": 0},
    "results": [
        {"policy": "agents/payments", "rule": "money", "result": "pass",
         "message": "payments.refund: Approved (HumanApproved) approved by alice, bob",
         "source": "handoff", "category": "tier 4", "severity": "high", "scored": True,
         "timestamp": {"seconds": 1795975380, "nanos": 0},
         "resources": [{"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                        "name": "new", "namespace": "agents", "uid": "u-new"}],
         "properties": {"action": "payments.refund", "reason": "HumanApproved",
                        "by": "alice,bob", "phase": "Executed"}},
        {"policy": "agents/(none)", "rule": "default", "result": "pass",
         "message": "payments.refund: Approved (HumanApproved) approved by alice, bob",
         "source": "handoff", "category": "tier 1", "severity": "info", "scored": True,
         "timestamp": {"seconds": 1795971600, "nanos": 0},
         "resources": [{"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                        "name": "old", "namespace": "agents", "uid": "u-old"}],
         "properties": {"action": "payments.refund", "reason": "HumanApproved",
                        "by": "alice,bob", "phase": "Approved"}},
    ],
}  # fmt: skip


def test_the_policy_report_whole() -> None:
    history = [
        decided("old", None, tier=1, policy=None, rule=None),
        decided("new", "2026-11-29T18:03:00Z", phase="Executed"),
        body(WAITING),  # undecided: not in the report
    ]
    assert policy_report("agents", "payments-agent", history) == REPORT


@pytest.mark.parametrize(
    ("tier", "category", "severity"),
    [(1, "tier 1", "info"), (2, "tier 2", "low"), (3, "tier 3", "medium"), (4, "tier 4", "high"),
     (None, "tier ?", "high"), (0, "tier 0", "high"), (7, "tier 7", "high")],
)  # fmt: skip
def test_policy_report_severity_by_tier(tier: Any, category: str, severity: str) -> None:
    [result] = policy_report("agents", "a", [decided("r", "2026-11-29T18:00:00Z", tier=tier)])[
        "results"
    ]
    assert (result["category"], result["severity"]) == (category, severity)


def test_policy_report_message_edge_cases() -> None:
    history = [decided("r", "2026-11-29T18:00:00Z")]
    history[0]["status"]["decision"] = {"outcome": "Denied", "reason": "Expired",
                                        "at": "2026-11-29T18:00:00Z"}  # fmt: skip
    [result] = policy_report("agents", "a", history)["results"]
    assert result["message"] == "payments.refund: Denied (Expired) "
    assert result["properties"]["by"] == ""
    history[0]["status"]["decision"]["message"] = "m" * 5000
    [result] = policy_report("agents", "a", history)["results"]
    assert len(result["message"]) == 4096


def test_policy_report_keeps_the_newest_results() -> None:
    history = [decided(f"r{i:03}", f"2026-11-29T{10 + i // 60:02}:{i % 60:02}:00Z")
               for i in range(MAX_RESULTS + 1)]  # fmt: skip
    history.insert(3, body(WAITING))  # an undecided one in the middle is skipped, not the end
    report = policy_report("agents", "a", history)
    names = [r["resources"][0]["name"] for r in report["results"]]
    assert len(names) == MAX_RESULTS == 200
    assert names[0] == f"r{MAX_RESULTS:03}"
    assert names[-1] == "r001"
    assert report["summary"]["pass"] == MAX_RESULTS


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"decision": {"outcome": "Approved"}, "phase": "Executed"}, "pass"),
        ({"decision": {"outcome": "Approved"}, "execution": {"outcome": "Executed"}}, "pass"),
        ({"decision": {"outcome": "Denied"}, "execution": {"outcome": "Failed"}}, "error"),
        ({"decision": {"outcome": "Approved"}, "phase": "RolledBack",
          "execution": {"outcome": "Failed"}}, "warn"),
        ({"decision": {"outcome": "Denied", "reason": "Vetoed"}}, "fail"),
        ({"decision": {"reason": "Expired"}, "execution": {"outcome": "Failed"}}, "warn"),
        ({"decision": {}}, None),
        ({"decision": None}, None),
        ({"decision": {"outcome": "approved"}}, "fail"),
    ],
)  # fmt: skip
def test_policy_report_result_precedence(status: dict[str, Any], expected: str | None) -> None:
    assert result_of({"status": status}) == expected
    assert result_of({"status": None}) is None


# -- the audit and decision records ------------------------------------------------------------

COMMON = {"namespace": "agents", "name": "refund-1", "uid": "u-1", "agent": "payments-agent",
          "action": "payments.refund", "target": "stripe:ch_1", "summary": "Refund $5",
          "tier": "4", "oversight": "HITL", "policy": "payments", "reversible": "true"}  # fmt: skip


def test_every_record_of_a_full_history_whole() -> None:
    status = WAITING | {
        "phase": "RolledBack",
        "reviews": [{"reviewer": "alice", "decision": "Approve", "comment": "ok"}, {}],
        "decision": DECISION,
        "specDigest": "sha256:d",
        "rollback": {"request": "undo-1", "by": "carol", "at": "t1", "done": True,
                     "doneAt": "t2", "message": "undone"},
        "execution": {"outcome": "Executed", "message": "sent", "at": "t0"},
    }  # fmt: skip
    details = {"reason": "HumanApproved", "by": "alice,bob", "message": "approved by alice, bob",
               "at": "2026-11-29T18:03:00Z"}  # fmt: skip
    assert records(body(status), "audit", now="now") == [
        Record("audit", "phase:AwaitingApproval", COMMON | {"event": "AwaitingApproval",
               "deadline": "2026-11-29T18:15:00Z"}),
        Record("audit", "review:0", COMMON | {"event": "Reviewed", "by": "alice",
               "reason": "Approve", "message": "ok", "at": "now"}),
        Record("audit", "review:1", COMMON | {"event": "Reviewed", "by": "", "reason": "",
               "message": "", "at": "now"}),
        Record("audit", "phase:Approved", COMMON | {"event": "Approved"} | details),
        Record("handoff:decisions:agents:payments-agent", "decision", COMMON | details | {
               "outcome": "Approved", "stateRef": "handoff:state:p1", "specDigest": "sha256:d"}),
        Record("audit", "rollback:requested", COMMON | {"event": "RollbackRequested",
               "by": "carol", "at": "t1", "message": "rollback filed as undo-1"}),
        Record("audit", "phase:RolledBack", COMMON | {"event": "RolledBack", "at": "t2",
               "message": "undone"}),
        Record("audit", "phase:Executed", COMMON | {"event": "Executed", "message": "sent",
               "at": "t0"}),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "dedups"),
    [
        ({"phase": "Queued", "tier": 3, "oversight": "HOTL", "deadline": "d"}, ["phase:Queued"]),
        ({"phase": "Queued", "tier": 2, "oversight": "HOTL", "deadline": "d"},
         ["phase:AwaitingApproval"]),
        ({"phase": "AwaitingApproval", "tier": 3, "oversight": "HITL", "deadline": "d"},
         ["phase:AwaitingApproval"]),
        ({"phase": "AwaitingApproval", "tier": 4, "oversight": "HITL"}, []),
        ({"phase": "AwaitingApproval", "tier": 4, "deadline": "d"}, []),
        ({"tier": 4, "oversight": "HITL", "deadline": "d"}, []),
        ({"phase": "Denied", "rollback": {"by": "x"}, "execution": {}}, []),
        ({"phase": "Denied", "decision": {}}, []),
        ({"phase": "Denied", "rollback": {"request": "u"}}, ["rollback:requested"]),
    ],
)  # fmt: skip
def test_which_records_a_status_implies(status: dict[str, Any], dedups: list[str]) -> None:
    assert [r.dedup for r in records(body(status), "audit")] == dedups


def test_a_record_of_a_sparse_request_has_every_field_as_a_string() -> None:
    sparse = {"metadata": {}, "spec": {}, "status": {"phase": "Denied",
              "decision": {"outcome": "Denied"}, "policy": None}}  # fmt: skip
    [audit, decision] = records(sparse, "audit")
    empty = {"namespace": "", "name": "", "uid": "", "agent": "", "action": "", "target": "",
             "summary": "", "tier": "", "oversight": "", "policy": "", "reversible": "false"}  # fmt: skip
    details = {"reason": "", "by": "", "message": "", "at": ""}
    assert audit == Record("audit", "phase:Denied", empty | {"event": "Denied"} | details)
    assert decision == Record("handoff:decisions::", "decision", empty | details | {
        "outcome": "Denied", "stateRef": "", "specDigest": ""})  # fmt: skip
    assert records({"metadata": None, "spec": None, "status": None}, "audit") == []


def test_a_post_incident_review_goes_to_the_audit_only() -> None:
    status = {"phase": "Approved", "decision": DECISION}
    found = records(body(status, action="handoff.post-incident-review"), "audit")
    assert [r.dedup for r in found] == ["phase:Approved"]


def test_an_outcome_message_is_cut_at_2000_characters() -> None:
    now = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    patch = execution_patch({"decision": {"outcome": "Approved"}}, "Failed", "m" * 2500, now)
    assert patch is not None
    assert len(patch["execution"]["message"]) == 2000


def test_records_of_sparse_decisions_rollbacks_and_executions() -> None:
    status = {
        "phase": "Failed",
        "reviews": [{"reviewer": "alice", "decision": "Approve"}],
        "decision": {"reason": "HumanApproved"},
        "rollback": {"request": "undo-1", "done": True},
        "execution": {"message": "boom"},
    }
    found = records(body(status, rollback=None), "audit")
    own = [(r.dedup, {k: v for k, v in r.fields.items() if k not in COMMON}) for r in found]
    assert own == [
        ("review:0", {"event": "Reviewed", "by": "alice", "reason": "Approve", "message": "", "at": ""}),
        ("phase:", {"event": "", "reason": "HumanApproved", "by": "", "message": "", "at": ""}),
        ("decision", {"reason": "HumanApproved", "by": "", "message": "", "at": "", "outcome": "",
                      "stateRef": "handoff:state:p1", "specDigest": ""}),
        ("rollback:requested", {"event": "RollbackRequested", "by": "", "at": "",
                                "message": "rollback filed as undo-1"}),
        ("phase:RolledBack", {"event": "RolledBack", "at": "", "message": ""}),
        ("phase:", {"event": "", "message": "boom", "at": ""}),
    ]  # fmt: skip


def test_a_report_row_of_a_sparse_request() -> None:
    sparse = {"metadata": {"name": "r", "creationTimestamp": "2026-11-29T17:00:00Z"}, "spec": {},
              "status": {"tier": 2, "decision": {"outcome": "Denied"}}}  # fmt: skip
    [result] = policy_report("agents", "a", [sparse])["results"]
    assert result["resources"] == [{"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                                     "name": "r", "namespace": "agents", "uid": ""}]  # fmt: skip
    assert result["properties"] == {"action": "", "reason": "", "by": "", "phase": ""}
    assert result["message"] == "None: Denied (None) "


def test_an_execution_record_without_a_message() -> None:
    status = {"phase": "Executed", "execution": {"outcome": "Executed", "at": "t0"}}
    [record] = records(body(status), "audit")
    assert (record.dedup, record.fields["message"], record.fields["at"]) == (
        "phase:Executed",
        "",
        "t0",
    )

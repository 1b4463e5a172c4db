"""A grant's own audit lines (granted, used up, refused, revoked): each once, bounded, and the
PolicyReport row of a request a grant decided."""

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from handoff.adapters.outbox import MemoryOutbox
from handoff.cli.grant_log import grant_lines
from handoff.controller.events import Events
from handoff.controller.grant_audit import GrantAuditor
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.records import GRANT_TEXT_MAX, grant_records
from handoff.domain.report import policy_report, result_of
from handoff.testing.kube import FakeKube

from tests.unit.test_grants import grant_json

NOW = "2026-12-01T12:30:00Z"


def grant(**status: Any) -> dict[str, Any]:
    body = grant_json(comment="for the refund backlog")
    body["metadata"]["uid"] = "g-uid"
    body["status"] = status
    return body


def lines(body: dict[str, Any], deleted: bool = False) -> dict[str, dict[str, str]]:
    found = grant_records(body, AUDIT_STREAM, deleted=deleted, now=NOW)
    assert all(r.stream == AUDIT_STREAM for r in found)
    return {r.dedup: r.fields for r in found}


def test_a_new_grant_is_one_granted_line_naming_who_what_until_and_how_many() -> None:
    [(dedup, line)] = lines(grant()).items()
    assert dedup == "grant:Granted"
    assert line["event"] == "Granted"
    assert line["kind"] == "ActionGrant"
    assert (line["by"], line["agent"], line["action"], line["target"]) == (
        "alice", "payments-agent", "payments.refund", "stripe:charge/*",
    )  # fmt: skip
    assert (line["until"], line["maxUses"], line["used"]) == ("2026-12-01T13:00:00Z", "3", "0")
    assert (line["at"], line["namespace"], line["uid"]) == ("2026-12-01T12:00:00Z", "agents",
                                                            "g-uid")  # fmt: skip
    assert line["comment"] == "for the refund backlog"
    assert line["request"] == "refund-1"
    assert "until 2026-12-01T13:00:00Z, at most 3 uses" in line["message"]


def used(count: int) -> list[dict[str, str]]:
    return [{"uid": f"r{i}", "request": f"refund-{i}", "at": f"2026-12-01T12:0{i}:00Z"}
            for i in range(count)]  # fmt: skip


def test_used_up_only_at_the_last_use_stamped_with_it() -> None:
    assert list(lines(grant(usedBy=used(2)))) == ["grant:Granted"]
    found = lines(grant(usedBy=used(3)))
    assert list(found) == ["grant:Granted", "grant:UsedUp"]
    assert found["grant:UsedUp"]["at"] == "2026-12-01T12:02:00Z"
    assert found["grant:UsedUp"]["used"] == "3"


def test_refused_and_revoked() -> None:
    found = lines(grant(refused="GrantRefused: refund-1 does not exist", usedBy=used(1)),
                  deleted=True)  # fmt: skip
    assert list(found) == ["grant:Granted", "grant:Refused", "grant:Revoked"]
    assert found["grant:Refused"]["message"] == "GrantRefused: refund-1 does not exist"
    assert found["grant:Revoked"]["at"] == NOW
    assert found["grant:Revoked"]["message"] == "revoked (deleted) after 1 of 3 uses"
    assert "by" not in found["grant:Revoked"]  # the watch does not say who deleted it
    assert found["grant:Revoked"]["grantedBy"] == "alice"


def test_reviewer_written_text_is_clipped_and_kept_as_text() -> None:
    long = "<script>alert(1)</script>" + "x" * 5000
    body = grant_json(target="stripe:" + long, condition="true || " + long, comment=long)
    line = lines(body)["grant:Granted"]
    for key in ("target", "condition", "comment"):
        assert len(line[key]) == GRANT_TEXT_MAX
        assert line[key].endswith("…")
    assert len(line["message"]) < 2 * GRANT_TEXT_MAX
    assert "<script>" in line["comment"]  # text; the console only ever sets it as textContent


def test_a_malformed_grant_still_yields_strings() -> None:
    found = lines({"metadata": {"name": "g"}, "spec": {"maxUses": "many"}}, deleted=True)
    assert list(found) == ["grant:Granted", "grant:Revoked"]
    assert all(isinstance(v, str) for line in found.values() for v in line.values())


def test_the_auditor_publishes_and_logs_each_line_once(caplog: pytest.LogCaptureFixture) -> None:
    outbox = MemoryOutbox()
    auditor = GrantAuditor(outbox, lambda: datetime(2026, 12, 1, 12, 30, tzinfo=UTC))
    caplog.set_level(logging.INFO, logger="handoff.audit")

    async def run() -> None:
        await auditor.seen(grant(), deleted=False)
        await auditor.seen(grant(usedBy=used(1)), deleted=False)  # a use: nothing new
        await auditor.seen(grant(usedBy=used(3)), deleted=False)
        await auditor.seen(grant(usedBy=used(3)), deleted=True)
        await GrantAuditor(outbox, auditor.clock).seen(grant(usedBy=used(3)), deleted=True)

    asyncio.run(run())
    events = [line["event"] for line in outbox.streams[AUDIT_STREAM]]
    assert events == ["Granted", "UsedUp", "Revoked"]
    logged = [json.loads(r.message) for r in caplog.records if r.name == "handoff.audit"]
    assert [line["id"] for line in logged] == ["g-uid/grant:Granted", "g-uid/grant:UsedUp",
                                              "g-uid/grant:Revoked"]  # fmt: skip


def test_without_redis_the_auditor_logs_each_line_once(caplog: pytest.LogCaptureFixture) -> None:
    auditor = GrantAuditor(None, lambda: datetime(2026, 12, 1, 12, 30, tzinfo=UTC))
    caplog.set_level(logging.INFO, logger="handoff.audit")
    asyncio.run(auditor.seen(grant(), deleted=False))
    asyncio.run(auditor.seen(grant(), deleted=True))
    logged = [json.loads(r.message)["event"] for r in caplog.records if r.name == "handoff.audit"]
    assert logged == ["Granted", "Revoked"]


def test_redis_down_retries_with_the_same_body() -> None:
    outbox = MemoryOutbox()
    outbox.down = True
    auditor = GrantAuditor(outbox, lambda: datetime(2026, 12, 1, 12, 30, tzinfo=UTC))

    async def run() -> None:
        await auditor.seen(grant(), deleted=True)
        assert outbox.streams == {}
        outbox.down = False
        auditor._again(grant(), True)  # what the timer does after RETRY
        await asyncio.gather(*auditor._retries)

    asyncio.run(run())
    assert [line["event"] for line in outbox.streams[AUDIT_STREAM]] == ["Granted", "Revoked"]


def test_a_grant_approved_request_counts_as_pass_in_its_policy_report() -> None:
    decided = {
        "metadata": {"namespace": "agents", "name": "refund-2", "uid": "u-2",
                     "creationTimestamp": "2026-12-01T12:01:00Z"},
        "spec": {"agent": "payments-agent", "action": "payments.refund"},
        "status": {"phase": "Approved", "tier": 3, "policy": "payments", "rule": "small-refunds",
                   "decision": {"outcome": "Approved", "reason": "GrantApproved",
                                "by": ["alice", "actiongrant/g1"], "at": "2026-12-01T12:01:00Z",
                                "message": "approved in advance by alice with actiongrant/g1"}},
    }  # fmt: skip
    assert result_of(decided) == "pass"
    report = policy_report("agents", "payments-agent", [decided])
    assert report["summary"]["pass"] == 1
    [row] = report["results"]
    assert row["properties"]["reason"] == "GrantApproved"
    assert row["properties"]["by"] == "alice,actiongrant/g1"
    assert "actiongrant/g1" in row["message"]


def test_a_revoked_grant_is_one_event_on_it_for_kubectl_handoff_log() -> None:
    """The Revoked line is posted once as an Event on the (deleted) grant: the one trace of it
    a reviewer can read with their own rights."""
    kube = FakeKube()
    clock = lambda: datetime(2026, 12, 1, 12, 30, tzinfo=UTC)  # noqa: E731
    auditor = GrantAuditor(MemoryOutbox(), clock, Events(kube, clock, at_once=1))  # type: ignore[arg-type]

    async def twice() -> None:
        for _ in range(2):  # a DELETED event seen again (a restart, a retry)
            await auditor.seen(grant(usedBy=used(1)), deleted=True)
            await asyncio.sleep(0.05)

    asyncio.run(twice())
    [event] = kube.created("Event")
    assert event["involvedObject"]["kind"] == "ActionGrant"
    assert event["reason"] == "Revoked"
    assert event["message"] == (
        "alice's grant of payments.refund by payments-agent on stripe:charge/* (rule"
        " small-refunds of policy payments, prompted by refund-1) was revoked (deleted) after 1"
        " of 3 uses"
    )
    # Whose grant it was, as a field: `kubectl handoff log --agent` never reads it from the text.
    assert event["related"] == {"apiVersion": "v1", "kind": "ServiceAccount",
                                "namespace": "agents", "name": "payments-agent"}  # fmt: skip


def test_kubectl_handoff_log_tells_an_agent_only_its_own_revoked_grants() -> None:
    """The grant's target is the agent's own word (its request's target, free text): text in it
    that reads like another agent's name must not put the line under that agent."""

    def revoked(agent: str, target: str) -> dict[str, Any]:
        return {
            "reason": "Revoked", "lastTimestamp": NOW,
            "involvedObject": {"kind": "ActionGrant", "name": f"g-{agent}"},
            "related": {"apiVersion": "v1", "kind": "ServiceAccount", "namespace": "agents",
                        "name": agent},
            "message": f"alice's grant of pay by {agent} on {target} (rule r of policy p,"
                       " prompted by q) was revoked (deleted) after 0 of 1 uses",
        }  # fmt: skip

    events = [revoked("mallory", "x by payments-agent on y"), revoked("payments-agent", "x")]
    since = datetime(2026, 12, 1, tzinfo=UTC)
    told = asyncio.run(grant_lines(FakeKube(), "agents", events, since, "payments-agent"))  # type: ignore[arg-type]
    assert [text.split(":")[0] for _, text in told] == ["  actiongrant/g-payments-agent"]
    everyone = asyncio.run(grant_lines(FakeKube(), "agents", events, since, None))  # type: ignore[arg-type]
    assert len(everyone) == 2


def test_the_granted_line_whole() -> None:
    body = grant(refused=None)
    body["spec"]["condition"] = "parameters.amount <= 10"
    assert lines(body)["grant:Granted"] == {
        "kind": "ActionGrant", "event": "Granted", "namespace": "agents", "name": "g1",
        "uid": "g-uid", "agent": "payments-agent", "action": "payments.refund",
        "target": "stripe:charge/*", "condition": "parameters.amount <= 10",
        "comment": "for the refund backlog", "policy": "payments", "rule": "small-refunds",
        "request": "refund-1", "until": "2026-12-01T13:00:00Z", "maxUses": "3", "used": "0",
        "grantedBy": "alice", "by": "alice", "at": "2026-12-01T12:00:00Z",
        "message": "granted payments.refund by payments-agent on stripe:charge/* until"
                   " 2026-12-01T13:00:00Z, at most 3 uses (prompted by refund-1)",
    }  # fmt: skip


def test_a_grant_without_fields_has_empty_ones_never_none() -> None:
    found = lines({}, deleted=True)
    assert found["grant:Granted"] == {
        "kind": "ActionGrant", "event": "Granted", "namespace": "", "name": "", "uid": "",
        "agent": "", "action": "", "target": "", "condition": "", "comment": "", "policy": "",
        "rule": "", "request": "", "until": "", "maxUses": "", "used": "0", "grantedBy": "",
        "by": "", "at": "", "message": "granted  by  on  until , at most  uses (prompted by )",
    }  # fmt: skip
    assert found["grant:Revoked"]["message"] == "revoked (deleted) after 0 of  uses"


# Each row: maxUses, the uses taken, and whether the grant is used up (its last use taken).
@pytest.mark.parametrize(
    ("max_uses", "taken", "used_up"),
    [(1, 0, False), (1, 1, True), (3, 2, False), (3, 3, True), (3, 4, True),
     (0, 0, False), (0, 1, False), (-1, 0, False), ("3", 3, False), (None, 3, False)],
)  # fmt: skip
def test_used_up_when_the_last_use_is_taken(max_uses: Any, taken: int, used_up: bool) -> None:
    body = grant(usedBy=used(taken))
    body["spec"]["maxUses"] = max_uses
    found = lines(body)
    assert ("grant:UsedUp" in found) is used_up
    if used_up:
        line = found["grant:UsedUp"]
        assert line["message"] == f"used up: {taken} of {max_uses} uses taken"
        assert line["at"] == f"2026-12-01T12:0{taken - 1}:00Z"  # the last use's


def test_used_up_stamped_with_nothing_when_the_last_use_has_no_time() -> None:
    found = lines(grant(usedBy=[{"uid": "r0"}, {"uid": "r1"}, {"uid": "r2"}, "junk"]))
    assert found["grant:UsedUp"]["at"] == ""
    assert found["grant:UsedUp"]["used"] == "3"  # only maps count as uses


def test_refused_is_stamped_now() -> None:
    found = lines(grant(refused="GrantRefused: no such rule"))
    assert found["grant:Refused"]["at"] == NOW
    assert found["grant:Refused"]["event"] == "Refused"


# Each row: a reviewer-written text, and what the line carries (256 characters at most).
@pytest.mark.parametrize(
    ("text", "carried"),
    [
        (None, ""),
        ("", ""),
        (7, "7"),
        ("x" * GRANT_TEXT_MAX, "x" * GRANT_TEXT_MAX),
        ("x" * (GRANT_TEXT_MAX + 1), "x" * (GRANT_TEXT_MAX - 1) + "…"),
    ],
)  # fmt: skip
def test_reviewer_written_text_up_to_its_bound(text: Any, carried: str) -> None:
    body = grant()
    body["spec"]["comment"] = text
    assert lines(body)["grant:Granted"]["comment"] == carried


def test_control_characters_in_an_event_message_are_shown_as_escapes() -> None:
    """kubectl prints an Event's message as it is: agent-written text quoted in it (a target
    stored before the CRD refused control characters, a summary) cannot drive the terminal."""
    kube = FakeKube()
    clock = lambda: datetime(2026, 12, 1, 12, 30, tzinfo=UTC)  # noqa: E731
    auditor = GrantAuditor(MemoryOutbox(), clock, Events(kube, clock, at_once=1))  # type: ignore[arg-type]
    hostile = grant(usedBy=used(1))
    hostile["spec"]["target"] = "stripe:\x1b[2K\rch_1\x9b2J\x7f\u202e\n"
    asyncio.run(auditor.seen(hostile, deleted=True))
    [event] = kube.created("Event")
    message = event["message"]
    assert "on stripe:\\x1b[2K\\rch_1\\x9b2J\\x7f\\u202e\\n (rule" in message
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in message)

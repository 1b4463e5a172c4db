"""An MCP task read off its ActionRequest (gateway/taskstate.py): the status each phase maps to,
the ttl that follows the decision window, whose task it is, and which ids are ids at all."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from handoff.gateway.auth import Caller
from handoff.gateway.store import RESULT_TTL
from handoff.gateway.taskstate import owned_by, state, task_of, ttl_ms, valid_task_id

CREATED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEPT = timedelta(seconds=RESULT_TTL)
AGENT = Caller("agents", "payments-agent", "token")


def request(status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "mcp-abc", "namespace": "agents", "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"handoff.dev/agent": "payments-agent"},
            "annotations": {"handoff.dev/requested-by": AGENT.user}, **meta,
        },
        "spec": {"agent": "payments-agent", "execution": "MCP", "action": "mcp.bank.transfer"},
        "status": status or {},
    }  # fmt: skip


APPROVED = {"outcome": "Approved", "reason": "HumanApproved", "at": "2026-12-01T10:05:00Z"}
DENIED = {"outcome": "Denied", "reason": "HumanDenied", "message": "denied by bob",
          "at": "2026-12-01T10:05:00Z"}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "expected", "said"),
    [
        ({}, "working", "the operator is classifying it"),
        ({"phase": "Pending"}, "working", "classifying"),
        ({"phase": "Queued"}, "working", "is queued"),
        ({"phase": "AwaitingApproval", "tier": 4, "deadline": "2026-12-01T10:05:00Z"}, "working",
         "awaits a person's decision as ActionRequest agents/mcp-abc (tier 4), until 2026-12-01T10:05:00Z"),
        ({"phase": "Approved", "decision": APPROVED}, "working", "the gateway calls the tool next"),
        ({"phase": "Approved", "decision": APPROVED, "execution": {"outcome": "Executing"}}, "working",
         "the gateway is calling the tool"),
        ({"phase": "Executed", "decision": APPROVED, "execution": {"outcome": "Executed"}}, "completed",
         "was approved and run"),
        ({"phase": "RolledBack", "decision": APPROVED, "execution": {"outcome": "Executed"}}, "completed",
         "since rolled back"),
        ({"phase": "Failed", "decision": APPROVED,
          "execution": {"outcome": "Failed", "message": "the upstream bank did not answer"}}, "failed",
         "Failed: the upstream bank did not answer"),
        ({"phase": "Denied", "decision": DENIED,
          "reviews": [{"reviewer": "bob", "decision": "Deny", "comment": "no ticket"}]}, "failed",
         "Denied (HumanDenied). denied by bob. Reviewer comments: bob: no ticket."),
        ({"phase": "Denied", "decision": {"outcome": "Denied", "reason": "Expired"}}, "failed",
         "Denied (Expired)"),
        ({"phase": "Denied", "decision": {"outcome": "Denied", "reason": "NoPolicy"}}, "failed",
         "Denied (NoPolicy)"),
    ],
)  # fmt: skip
def test_each_phase_maps_to_a_task_status(status: dict[str, Any], expected: str, said: str) -> None:
    got, message = state(request(status))
    assert got == expected
    assert said in message


def test_the_ttl_follows_the_decision_window_then_the_outcome_s_retention() -> None:
    at = CREATED + timedelta(minutes=1)
    waiting = request({"phase": "AwaitingApproval", "deadline": "2026-12-01T11:00:00Z"})
    assert ttl_ms(waiting, at) == (timedelta(hours=1) + KEPT) // timedelta(milliseconds=1)
    executed = request({"decision": APPROVED, "execution": {"outcome": "Executed",
                                                             "at": "2026-12-01T10:06:00Z"}})  # fmt: skip
    assert ttl_ms(executed, at) == (timedelta(minutes=6) + KEPT) // timedelta(milliseconds=1)
    denied = request({"decision": DENIED})
    assert ttl_ms(denied, at) == (timedelta(minutes=5) + KEPT) // timedelta(milliseconds=1)
    unclassified = request()
    assert ttl_ms(unclassified, at) == (timedelta(minutes=1) + KEPT) // timedelta(milliseconds=1)


def test_a_task_carries_its_times_and_polls_only_while_it_works() -> None:
    waiting = task_of(request({"phase": "AwaitingApproval", "conditions": [
        {"type": "Classified", "lastTransitionTime": "2026-12-01T10:00:01Z"}]}), CREATED)  # fmt: skip
    assert (waiting.task_id, waiting.status, waiting.poll_interval) == ("mcp-abc", "working", 5000)
    assert (waiting.created_at, waiting.last_updated_at) == (
        "2026-12-01T10:00:00Z",
        "2026-12-01T10:00:01Z",
    )
    assert task_of(request(), CREATED).poll_interval == 1000
    done = task_of(request({"decision": DENIED}), CREATED)
    assert (done.status, done.poll_interval, done.last_updated_at) == (
        "failed",
        None,
        "2026-12-01T10:05:00Z",
    )


@pytest.mark.parametrize(
    ("change", "mine"),
    [
        ({}, True),
        ({"metadata": {"namespace": "other"}}, False),
        ({"spec": {"agent": "other-agent"}}, False),
        ({"spec": {"execution": "Agent"}}, False),
        ({"metadata": {"annotations": {"handoff.dev/requested-by": "system:serviceaccount:handoff-system:handoff"}}}, False),
        ({"metadata": {"annotations": {}}}, False),
        ({"metadata": {"labels": {"handoff.dev/agent": "other-agent"}}}, False),
        ({"metadata": {"labels": {}}}, False),
    ],
)  # fmt: skip
def test_a_task_belongs_to_the_agent_that_filed_it(change: dict[str, Any], mine: bool) -> None:
    body = request()
    for part, fields in change.items():
        body[part] = {**body[part], **fields}
    assert owned_by(body, AGENT) is mine


@pytest.mark.parametrize(
    ("task_id", "valid"),
    [
        ("mcp-0123456789abcdef0123456789abcdef01234567", True),
        ("mcp-x7k2q", True),
        ("", False),
        ("..", False),
        ("a..b", False),
        ("../secrets", False),
        ("mcp-x/../y", False),
        ("MCP-ABC", False),
        ("mcp-\u0430", False),
        ("mcp-abc\n", False),
        ("a" * 254, False),
        (7, False),
        (None, False),
    ],
)
def test_only_object_names_are_task_ids(task_id: object, valid: bool) -> None:
    assert valid_task_id(task_id) is valid

"""Undoing an approved action, table by table: when a Rollback review asks for it, and the request
Handoff files to carry out the plan."""

from typing import Any

import pytest
from handoff.domain.model import Review
from handoff.domain.rollback import requested_rollback, rollback_name, rollback_request

ASK = {"reviewer": "carol", "decision": "Rollback", "comment": "it broke checkout"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"reviews": [{"reviewer": "alice", "decision": "Approve"}, ASK]},
         Review("carol", "Rollback", comment="it broke checkout")),
        ({"reviews": [ASK, ASK | {"reviewer": "dave"}]}, Review("carol", "Rollback", comment="it broke checkout")),
        ({"reviews": [ASK], "rollback": {"request": "r-rollback"}}, None),
        ({"reviews": [ASK], "rollback": {"by": "carol"}}, Review("carol", "Rollback", comment="it broke checkout")),
        ({"reviews": [{"reviewer": "alice", "decision": "Approve"}]}, None),
        ({"reviews": None, "rollback": None}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_a_rollback_is_requested_by_a_review(
    status: dict[str, Any], expected: Review | None
) -> None:
    assert requested_rollback(status) == expected


def original(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "refund-1", "namespace": "agents"},
        "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_1",
                 "summary": "Refund $5", "parameters": {"amount": 5},
                 "rollback": {"description": "charge again", "action": "payments.charge",
                              "parameters": {"amount": 5, "again": True}}} | spec,
    }  # fmt: skip


def test_the_rollback_request_whole() -> None:
    filed = rollback_request(original(), Review("carol", "Rollback", comment="it broke checkout"))
    assert filed["apiVersion"] == "handoff.dev/v1alpha1"
    assert filed["kind"] == "ActionRequest"
    assert filed["metadata"]["namespace"] == "agents"
    assert filed["metadata"]["name"] == "refund-1-rollback"
    assert filed["metadata"]["labels"] == {
        "handoff.dev/agent": "payments-agent",
        "handoff.dev/rollback-of": "refund-1",
    }
    assert filed["spec"] == {
        "agent": "payments-agent",
        "action": "payments.charge",
        "target": "stripe:ch_1",
        "parameters": {"amount": 5, "again": True},
        "summary": "Roll back: charge again",
        "reasoning": "carol asked to roll back refund-1: it broke checkout",
        "blastRadius": "Undoes refund-1 (Refund $5)",
        "rollbackOf": "refund-1",
        "rollback": {
            "description": "Redo the original action: Refund $5",
            "action": "payments.refund",
            "parameters": {"amount": 5},
        },
    }


def test_a_bare_plan_undoes_with_the_same_action_and_no_parameters() -> None:
    bare = original(rollback={}, target="", parameters=None, summary=None)
    del bare["spec"]["summary"]
    spec = rollback_request(bare, Review("carol", "Rollback"))["spec"]
    assert spec == {
        "agent": "payments-agent",
        "action": "payments.refund",
        "summary": "Roll back: ",
        "reasoning": "carol asked to roll back refund-1",
        "blastRadius": "Undoes refund-1 ()",
        "rollbackOf": "refund-1",
        "rollback": {
            "description": "Redo the original action: ",
            "action": "payments.refund",
            "parameters": {},
        },
    }


def test_long_texts_are_cut_to_the_schemas_limits() -> None:
    long = original(summary="s" * 2000, rollback={"description": "d" * 2000})
    spec = rollback_request(long, Review("carol", "Rollback", comment="c" * 5000))["spec"]
    lengths = [len(spec[k]) for k in ("summary", "reasoning", "blastRadius")]
    assert lengths == [1024, 4096, 1024]
    assert len(spec["rollback"]["description"]) == 1024


@pytest.mark.parametrize(("name", "length"), [("r", 10), ("r" * 244, 253), ("r" * 300, 253)])
def test_the_rollback_name_fits_a_kubernetes_name(name: str, length: int) -> None:
    assert rollback_name(name).endswith("-rollback")
    assert len(rollback_name(name)) == length


def test_the_rollback_of_label_fits_a_label_value() -> None:
    body = original()
    body["metadata"]["name"] = "n" * 100
    filed = rollback_request(body, Review("carol", "Rollback"))
    assert filed["metadata"]["labels"]["handoff.dev/rollback-of"] == "n" * 63
    assert filed["spec"]["rollbackOf"] == "n" * 100


# Each row: the original's spec.execution (absent: None) and the undo's. The undo runs through
# the same executor as what it undoes, whatever the agent's plan says.
@pytest.mark.parametrize(
    ("execution", "expected"),
    [("Webhook", "Webhook"), ("Kubernetes", "Kubernetes"), ("", None), (None, None)],
)
def test_the_undo_goes_through_the_originals_executor(
    execution: str | None, expected: str | None
) -> None:
    body = original() if execution is None else original(execution=execution)
    body["spec"]["rollback"]["execution"] = "Agent"  # the plan cannot choose its executor
    spec = rollback_request(body, Review("carol", "Rollback"))["spec"]
    assert spec.get("execution") == expected
    assert ("execution" in spec) is (expected is not None)

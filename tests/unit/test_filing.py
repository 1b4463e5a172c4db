"""The operator's own filings: which request found under its name is really its own, the name it
files under instead, and which carried-out rollback may mark the original RolledBack."""

from typing import Any

import pytest
from handoff.domain.breakglass import post_incident_request
from handoff.domain.filing import (
    POST_INCIDENT_OF,
    REQUESTED_BY,
    ROLLBACK_OF,
    is_name,
    label_value,
    name_taken,
    same_filing,
    squatter,
    under_generated_name,
)
from handoff.domain.model import Review
from handoff.domain.rollback import rollback_request, untrusted_undo

OPERATOR = "system:serviceaccount:handoff-system:handoff-operator"
AGENT_USER = "system:serviceaccount:agents:payments-agent"


def original(name: str = "crm-update-0a1b2c3d4e5f", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"name": name, "namespace": "agents", "uid": "u-1",
                     "annotations": {REQUESTED_BY: AGENT_USER}},
        "spec": {"agent": "payments-agent", "action": "crm.update", "target": "crm:contact/42",
                 "summary": "Set the phone", "parameters": {"phone": "1"},
                 "rollback": {"description": "Restore it", "action": "crm.update",
                              "parameters": {"phone": "0"}}},
        "status": status,
    }  # fmt: skip


def filed(document: dict[str, Any], by: str, name: str | None = None) -> dict[str, Any]:
    """``document`` as the API server keeps it, stamped with who filed it."""
    meta = document["metadata"] | {"annotations": {REQUESTED_BY: by}}
    if name:
        meta["name"] = name
    return {**document, "metadata": meta}


UNDO = rollback_request(original(), Review("alice", "Rollback", frozenset(), "wrong contact"))


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("crm-update-0a1b2c3d4e5f", True),
        ("a.b-c", True),
        ("x" * 253, True),
        ("x" * 254, False),
        ("../../other/actionrequests/victim", False),
        ("victim/status", False),
        ("victim?dryRun=All", False),
        ("victim#x", False),
        ("%2e%2e", False),
        ("Victim", False),
        ("-victim", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_only_a_plain_name_is_a_name(text: object, valid: bool) -> None:
    assert is_name(text) is valid


def test_a_label_value_is_at_most_63_characters_and_ends_alphanumeric() -> None:
    assert label_value("short") == "short"
    assert label_value("a" * 62 + "-b") == "a" * 62
    assert label_value("a" * 61 + ".-" + "b") == "a" * 61
    assert len(label_value("x" * 253)) == 63


def test_the_rollback_and_review_carry_their_label_however_long_the_name() -> None:
    long = original(name="a" * 62 + "-" + "b" * 20)
    undo = rollback_request(long, Review("alice", "Rollback", frozenset(), ""))
    assert undo["metadata"]["labels"][ROLLBACK_OF] == "a" * 62
    assert UNDO["metadata"]["labels"][ROLLBACK_OF] == "crm-update-0a1b2c3d4e5f"
    review = post_incident_request(long, ("carol",), "INC-1")
    assert review["metadata"]["labels"][POST_INCIDENT_OF] == "a" * 62


def test_only_the_operators_own_copy_counts_as_filed() -> None:
    assert same_filing(filed(UNDO, OPERATOR), UNDO, OPERATOR)
    # A perfect copy filed by anyone else is a squatter.
    assert not same_filing(filed(UNDO, AGENT_USER), UNDO, OPERATOR)
    unstamped = {**UNDO, "metadata": dict(UNDO["metadata"])}
    assert not same_filing(unstamped, UNDO, OPERATOR)
    # When the operator does not know its own name, nothing is its own.
    assert not same_filing(filed(UNDO, ""), UNDO, "")
    # Its own, but for something else: not this filing.
    for field, value in [("rollbackOf", "another"), ("action", "payments.refund"),
                         ("target", "crm:contact/43"), ("agent", "other-agent")]:  # fmt: skip
        other = filed({**UNDO, "spec": UNDO["spec"] | {field: value}}, OPERATOR)
        assert not same_filing(other, UNDO, OPERATOR), field


def test_a_taken_name_is_filed_under_a_generated_one() -> None:
    fresh = under_generated_name(UNDO)
    assert "name" not in fresh["metadata"]
    assert fresh["metadata"]["generateName"] == "crm-update-0a1b2c3d4e5f-rollback-"
    assert fresh["metadata"]["labels"] == UNDO["metadata"]["labels"]
    assert fresh["spec"] == UNDO["spec"]
    assert UNDO["metadata"]["name"] == "crm-update-0a1b2c3d4e5f-rollback"  # left as it was
    long = under_generated_name({"metadata": {"name": "x" * 253}})
    assert len(long["metadata"]["generateName"]) == 58  # what the API server keeps of it


def test_the_warning_names_the_squatter_and_where_the_request_went() -> None:
    squat = filed(UNDO, AGENT_USER)
    assert squatter(squat) == AGENT_USER
    assert squatter({"metadata": {"name": "x"}}) == (
        "someone the cluster did not stamp (no handoff.dev/requested-by)"
    )
    assert name_taken("a-rollback", AGENT_USER, "rollback", "a-rollback-x7k2q") == (
        f"a-rollback is not the rollback Handoff files: it was filed by {AGENT_USER}. Filed the"
        " rollback as a-rollback-x7k2q instead; a-rollback is left alone (a request filed under"
        " another's name can be deleted by an administrator)"
    )


def undo_of(target: Any, by: str = OPERATOR, name: str = "crm-update-0a1b2c3d4e5f-rollback") -> Any:
    return filed({**UNDO, "spec": UNDO["spec"] | {"rollbackOf": target}}, by, name)


def test_only_the_undo_the_operator_filed_and_recorded_marks_the_original() -> None:
    name = "crm-update-0a1b2c3d4e5f-rollback"
    asked = original(rollback={"by": "alice", "request": name})
    assert untrusted_undo(undo_of(asked["metadata"]["name"]), asked, OPERATOR) is None
    assert untrusted_undo(undo_of(asked["metadata"]["name"]), None, OPERATOR) is None  # gone

    forged = untrusted_undo(undo_of(asked["metadata"]["name"], by=AGENT_USER), asked, OPERATOR)
    assert forged is not None
    assert f"filed by {AGENT_USER}, not by the Handoff operator" in forged
    assert untrusted_undo(undo_of(asked["metadata"]["name"]), asked, "") is not None

    # Filed by the operator, but not the one the original records (or it records none).
    other = untrusted_undo(
        undo_of(asked["metadata"]["name"], name="other-rollback"), asked, OPERATOR
    )
    assert other is not None
    assert f"records {name} as its rollback, not other-rollback" in other
    waiting = untrusted_undo(undo_of("crm-update-0a1b2c3d4e5f"), original(), OPERATOR)
    assert waiting is not None
    assert "records no rollback request" in waiting

    elsewhere = asked | {"metadata": asked["metadata"] | {"namespace": "other"}}
    assert "different namespaces" in str(
        untrusted_undo(undo_of("crm-update-0a1b2c3d4e5f"), elsewhere, OPERATOR)
    )


@pytest.mark.parametrize(
    "target", ["../../other/actionrequests/victim", "victim/status", "", None, "x" * 300]
)
def test_an_undo_that_names_no_plain_request_marks_nothing(target: Any) -> None:
    problem = untrusted_undo(undo_of(target), None, OPERATOR)
    assert problem is not None
    assert "is not the name of a request in this namespace" in problem


UNDO_NAME = "crm-update-0a1b2c3d4e5f-rollback"
GONE = "NONE"  # the original was deleted (retention)


# Each row: the undo (its rollbackOf, who filed it, its name), the original's namespace and
# recorded rollback request (GONE: no original), and the whole message (None: it may mark it).
@pytest.mark.parametrize(
    ("target", "by", "name", "where", "recorded", "message"),
    [
        ("crm-update-0a1b2c3d4e5f", OPERATOR, UNDO_NAME, "agents", UNDO_NAME, None),
        ("crm-update-0a1b2c3d4e5f", OPERATOR, UNDO_NAME, "agents", GONE, None),
        ("victim/status", OPERATOR, UNDO_NAME, "agents", UNDO_NAME,
         f"{UNDO_NAME} says it rolls back 'victim/status', which is not the name of a request in"
         " this namespace: nothing was marked RolledBack"),
        (None, OPERATOR, UNDO_NAME, "agents", UNDO_NAME,
         f"{UNDO_NAME} says it rolls back 'None', which is not the name of a request in this"
         " namespace: nothing was marked RolledBack"),
        ("/" + "x" * 400, OPERATOR, UNDO_NAME, "agents", UNDO_NAME,
         f"{UNDO_NAME} says it rolls back {('/' + 'x' * 299)!r}, which is not the name of a"
         " request in this namespace: nothing was marked RolledBack"),
        ("crm-update-0a1b2c3d4e5f", AGENT_USER, UNDO_NAME, "agents", UNDO_NAME,
         f"{UNDO_NAME} says it rolls back crm-update-0a1b2c3d4e5f, but it was filed by"
         f" {AGENT_USER}, not by the Handoff operator: only a rollback Handoff filed marks"
         " crm-update-0a1b2c3d4e5f RolledBack"),
        ("crm-update-0a1b2c3d4e5f", "", UNDO_NAME, "agents", UNDO_NAME,
         f"{UNDO_NAME} says it rolls back crm-update-0a1b2c3d4e5f, but it was filed by someone"
         " the cluster did not stamp, not by the Handoff operator: only a rollback Handoff"
         " filed marks crm-update-0a1b2c3d4e5f RolledBack"),
        ("crm-update-0a1b2c3d4e5f", OPERATOR, UNDO_NAME, "other", UNDO_NAME,
         f"{UNDO_NAME} and crm-update-0a1b2c3d4e5f are in different namespaces: nothing was"
         " marked RolledBack"),
        ("crm-update-0a1b2c3d4e5f", OPERATOR, "other-rollback", "agents", UNDO_NAME,
         f"crm-update-0a1b2c3d4e5f records {UNDO_NAME} as its rollback, not other-rollback:"
         " nothing was marked RolledBack"),
        ("crm-update-0a1b2c3d4e5f", OPERATOR, UNDO_NAME, "agents", None,
         f"crm-update-0a1b2c3d4e5f records no rollback request as its rollback, not {UNDO_NAME}:"
         " nothing was marked RolledBack"),
    ],
)  # fmt: skip
def test_why_an_undo_may_not_mark_its_original(
    target: Any, by: str, name: str, where: str, recorded: str | None, message: str | None
) -> None:
    undo = undo_of(target, by=by, name=name)
    if not by:
        undo["metadata"]["annotations"] = {}
    asked = original(rollback={"by": "alice", "request": recorded} if recorded else {})
    asked["metadata"]["namespace"] = where
    assert untrusted_undo(undo, None if recorded == GONE else asked, OPERATOR) == message

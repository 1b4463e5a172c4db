"""How the decision core reads its inputs, table by table: an ActionRequest as the API server
returns it, the classification a waiting request carries, the reviews that count, the
rubber-stamp count and the digest of what was proposed."""

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from handoff.domain.decide import decide
from handoff.domain.model import RequestState, Review, Tally, Waiting, spec_digest
from handoff.domain.policyparts import ChecklistItem, Reviewers
from handoff.domain.reasons import Oversight
from handoff.domain.reviews import fast_approvals, tally

from .helpers import ACK_ALL, CREATED, approve, at, deny, policy

REQUESTER = "system:serviceaccount:agents:payments-agent"


def raw(status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"name": "r", "namespace": "agents", "uid": "u",
                     "creationTimestamp": "2026-11-29T18:00:00Z"} | meta,
        "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:1",
                 "parameters": {"amount": 2500}},
    }  # fmt: skip
    if status is not None:
        body["status"] = status
    return body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (raw(), (REQUESTER, 1, False, {}, {})),
        (raw(generation=4, labels={"team": "pay"}), (REQUESTER, 4, False, {}, {"team": "pay"})),
        (raw(generation=0), (REQUESTER, 1, False, {}, {})),
        (raw({"decision": {"outcome": "Approved"}}), (REQUESTER, 1, True, {"decision": {"outcome": "Approved"}}, {})),
        (raw({"phase": "AwaitingApproval"}), (REQUESTER, 1, False, {"phase": "AwaitingApproval"}, {})),
        (raw(None, namespace="ops"), ("system:serviceaccount:ops:payments-agent", 1, False, {}, {})),
    ],
)  # fmt: skip
def test_reading_a_request(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    state = RequestState.from_json(body)  # type: ignore[arg-type]
    got = (state.requester, state.generation, state.decided, dict(state.status),
           dict(state.facts.labels))  # fmt: skip
    assert got == expected
    assert state.created == CREATED
    assert state.spec == body["spec"]
    assert (state.facts.agent, state.facts.action, state.facts.namespace) == (
        "payments-agent", "payments.refund", body["metadata"]["namespace"]
    )  # fmt: skip
    assert state.budget_usage == {}


def test_a_request_read_with_no_spec_or_status() -> None:
    state = RequestState.from_json({"metadata": {"creationTimestamp": "2026-11-29T18:00:00Z"}})  # type: ignore[typeddict-item]
    assert (state.requester, state.spec, state.status, state.facts.agent) == (
        "system:serviceaccount::", {}, {}, ""
    )  # fmt: skip


def test_a_decided_request_read_from_the_api_is_never_classified_again() -> None:
    decided = RequestState.from_json(raw({"decision": {"outcome": "Denied"}}))  # type: ignore[arg-type]
    step = decide([policy()], decided, at(minutes=1))
    assert (step.patch, step.decision, step.event, step.wake_at) == (None, None, None, None)


def test_the_agent_cannot_approve_its_own_request_even_under_a_group_policy() -> None:
    """Group reviewers are vouched for by admission; the requester is refused here all the same."""
    policies = [policy(reviewers={"groups": ["payments-approvers"]})]
    state = RequestState.from_json(raw())  # type: ignore[arg-type]
    step = decide(policies, state, CREATED)
    assert step.patch is not None
    waiting = RequestState.from_json(raw(step.patch | {"reviews": [approve(REQUESTER)]}))  # type: ignore[arg-type]
    judged = decide(policies, waiting, at(minutes=1))
    assert judged.decision is None
    assert judged.patch is not None
    assert judged.patch["conditions"][-1]["message"].endswith(
        f"not counted: {REQUESTER}: the requester cannot review its own request"
    )


CLASSIFIED = {"type": "Classified", "reason": "MissingRollbackPlan"}
STATUS = {"tier": 2, "oversight": "HITL", "policy": "payments", "rule": "crm",
          "deadline": "2026-11-29T18:15:00Z", "requiredApprovals": 2,
          "checklist": [{"id": "what", "text": "I read it"}], "conditions": [CLASSIFIED]}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (STATUS, Waiting(2, Oversight.HITL, "payments", "crm", at(minutes=15), 2,
                         (ChecklistItem("what", "I read it"),), escalated=True)),
        (STATUS | {"conditions": [{"type": "Decided", "reason": "MissingRollbackPlan"},
                                  {"type": "Classified", "reason": "RuleMatched"}]},
         Waiting(2, Oversight.HITL, "payments", "crm", at(minutes=15), 2,
                 (ChecklistItem("what", "I read it"),), escalated=False)),
        (STATUS | {"requiredApprovals": None, "checklist": None, "conditions": None, "rule": None,
                   "tier": "3", "oversight": "HOTL"},
         Waiting(3, Oversight.HOTL, "payments", None, at(minutes=15), 1, (), escalated=False)),
        (STATUS | {"decision": {"outcome": "Approved"}}, None),
        (STATUS | {"deadline": ""}, None),
        (STATUS | {"policy": None}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_reading_the_classification_a_waiting_request_carries(
    status: dict[str, Any], expected: Waiting | None
) -> None:
    assert Waiting.from_status(status) == expected


# -- which reviews count -------------------------------------------------------------------------

USERS = Reviewers(users=frozenset({"alice", "bob"}))
GROUPS = Reviewers(groups=frozenset({"approvers"}))
CHECKLIST = (
    ChecklistItem("what", "w"),
    ChecklistItem("impact", "i"),
    ChecklistItem("rollback", "r"),
)


def review(
    who: str, decision: str = "Approve", acks: list[str] = ACK_ALL, glass: bool = False
) -> Review:
    return Review(who, decision, frozenset(acks), break_glass=glass)


@pytest.mark.parametrize(
    ("reviews", "reviewers", "expected"),
    [
        ([review("alice"), review("bob")], USERS, Tally(("alice", "bob"), (), ())),
        ([review("alice"), review("alice")], USERS, Tally(("alice",), (), ())),
        ([review("bob", "Deny"), review("bob", "Deny"), review("alice", "Deny")], USERS,
         Tally((), ("bob", "alice"), ())),
        ([review("alice"), review("alice", "Deny")], USERS, Tally(("alice",), ("alice",), ())),
        ([review("dave")], USERS, Tally((), (), ("dave: not a reviewer of this policy",))),
        ([review("dave")], GROUPS, Tally(("dave",), (), ())),
        ([review("dave", glass=True)], USERS, Tally(("dave",), (), (), ("dave",))),
        ([review("alice", glass=True), review("alice")], USERS, Tally(("alice",), (), (), ("alice",))),
        ([review("alice"), review("alice", glass=True)], USERS, Tally(("alice",), (), (), ())),
        ([review(REQUESTER)], GROUPS,
         Tally((), (), (f"{REQUESTER}: the requester cannot review its own request",))),
        ([review(REQUESTER, "Deny", glass=True)], USERS,
         Tally((), (), (f"{REQUESTER}: the requester cannot review its own request",))),
        ([review("dave", "Deny")], USERS, Tally((), (), ("dave: not a reviewer of this policy",))),
        ([review("alice", "deny")], USERS,
         Tally((), (), ("alice: decision 'deny' is neither Approve nor Deny",))),
        ([review("alice", acks=["what"])], USERS,
         Tally((), (), ("alice: did not acknowledge impact, rollback",))),
        ([review("alice", acks=["rollback", "what"])], USERS,
         Tally((), (), ("alice: did not acknowledge impact",))),
        ([review("alice", "Deny", acks=[])], USERS, Tally((), ("alice",), ())),
        ([], USERS, Tally((), (), ())),
    ],
)  # fmt: skip
def test_which_reviews_count(reviews: list[Review], reviewers: Reviewers, expected: Tally) -> None:
    assert tally(reviews, reviewers, CHECKLIST, REQUESTER) == expected


def test_no_checklist_needs_no_acknowledgement() -> None:
    assert tally([review("alice", acks=[])], USERS, (), REQUESTER).approvers == ("alice",)


@pytest.mark.parametrize(
    ("raw_review", "expected"),
    [
        ({"reviewer": "alice", "decision": "Approve", "acknowledged": ["what"], "comment": "ok",
          "breakGlass": True}, Review("alice", "Approve", frozenset({"what"}), "ok", True)),
        ({"breakGlass": "true"}, Review("", "", frozenset(), "", False)),
        ({"acknowledged": None, "breakGlass": False}, Review("", "", frozenset(), "", False)),
    ],
)  # fmt: skip
def test_reading_a_review(raw_review: dict[str, Any], expected: Review) -> None:
    assert Review.from_json(raw_review) == expected  # type: ignore[arg-type]


# -- approvals faster than the lane's minimum review time ---------------------------------------


def with_reviews(minimum: Any, *reviews: dict[str, Any]) -> RequestState:
    status: dict[str, Any] = {"reviews": list(reviews)}
    if minimum is not None:
        status["minReviewSeconds"] = minimum
    return RequestState.from_json(raw(status))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minimum", "reviews", "seen", "after", "expected"),
    [
        (20, [approve("alice")], 0, 19.9, 1),
        (20, [approve("alice")], 0, 20, 0),
        (20, [approve("alice")], 0, 25, 0),
        (20, [approve("alice"), deny("bob"), approve("carol")], 0, 5, 2),
        (20, [approve("alice"), approve("bob"), approve("carol")], 1, 5, 2),
        (20, [approve("alice"), approve("bob")], 2, 5, 0),
        (None, [approve("alice")], 0, 0.5, 0),  # no minimum: nothing is too fast
        (0, [approve("alice")], 0, 0.5, 0),
        ("30", [approve("alice")], 0, 29, 1),
    ],
)  # fmt: skip
def test_fast_approvals(
    minimum: Any, reviews: list[dict[str, Any]], seen: int, after: float, expected: int
) -> None:
    state = with_reviews(minimum, *reviews)
    assert fast_approvals(state, seen, CREATED, CREATED + timedelta(seconds=after)) == expected


# -- the digest of what was proposed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ({"b": 1, "a": [2, {"d": None, "c": True}]}, '{"a":[2,{"c":true,"d":null}],"b":1}'),
        ({"summary": "remboursé €5"}, '{"summary":"remboursé €5"}'),
        ({}, "{}"),
    ],
)
def test_the_spec_digest_is_sha256_of_the_canonical_json(
    spec: dict[str, Any], canonical: str
) -> None:
    expected = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert spec_digest(spec) == expected


def test_the_person_who_filed_as_the_agent_never_counts_as_its_reviewer() -> None:
    """Admission refuses a review by the requested-by stamp's user; the operator does not count
    one either, should it get through (a policy without that admission, a stamp admission
    wrote before the reviewer was added)."""
    body = {
        "metadata": {"namespace": "agents", "name": "r", "creationTimestamp": "2026-12-01T12:00:00Z",
                     "annotations": {"handoff.dev/requested-by": "alice"}},
        "spec": {"agent": "payments-agent", "action": "payments.refund", "summary": "s"},
    }  # fmt: skip
    state = RequestState.from_json(body)
    assert state.filed_by == "alice"
    assert state.not_reviewers == {REQUESTER, "alice"}
    counted = tally([review("alice"), review("bob")], USERS, CHECKLIST, state.not_reviewers)
    assert counted.approvers == ("bob",)
    assert counted.ignored == ("alice: the requester cannot review its own request",)
    # Filed by the agent itself: only its user is excluded, and no empty name is.
    body["metadata"]["annotations"] = {"handoff.dev/requested-by": REQUESTER}
    assert RequestState.from_json(body).not_reviewers == {REQUESTER}
    del body["metadata"]["annotations"]
    assert RequestState.from_json(body).not_reviewers == {REQUESTER}

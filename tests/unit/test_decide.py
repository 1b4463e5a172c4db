"""The decision core, table by table, with a fixed clock."""

from dataclasses import replace
from typing import Any

import pytest
from handoff.domain.decide import decide
from handoff.domain.model import RequestState, Review, spec_digest
from handoff.domain.policyparts import DEFAULT_CHECKLIST, Reviewers
from handoff.domain.reasons import Oversight, Phase, Reason
from handoff.domain.reviews import tally

from .helpers import ACK_ALL, CREATED, applied, approve, at, deny, policy, request, reviewed

REQUESTER = "system:serviceaccount:agents:payments-agent"


def classified(state: RequestState, policies: Any = None, when: Any = CREATED) -> RequestState:
    step = decide(policies if policies is not None else [policy()], state, when)
    assert step.patch is not None
    return applied(state, step)


# -- lanes at classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "tier", "oversight", "phase", "reason", "rule"),
    [
        (request("db.query"), 1, "HOOTL", "Approved", "AutoApproved", "reads"),
        (request("report.weekly"), 1, "HOOTL", "Approved", "AutoApproved", "reads"),
        (request("crm.update", rollback=True), 2, "HOTL", "Approved", "Logged", "crm-edits"),
        (request("crm.update"), 2, "HITL", "AwaitingApproval", None, "crm-edits"),
        (request("payments.refund", parameters={"amount": 50}), 3, "HOTL", "Queued", None, "small-refunds"),
        (request("payments.refund"), 4, "HITL", "AwaitingApproval", None, "money"),
        (request("customer.pii.read"), 4, "HITL", "AwaitingApproval", None, "pii"),
        (request("email.send"), 4, "HITL", "AwaitingApproval", None, None),
    ],
)  # fmt: skip
def test_each_lane_at_classification(
    state: RequestState, tier: int, oversight: str, phase: str, reason: str | None, rule: str | None
) -> None:
    step = decide([policy()], state, CREATED)
    assert step.patch is not None
    assert step.patch["tier"] == tier
    assert step.patch["oversight"] == oversight
    assert step.patch["phase"] == phase
    assert step.patch["rule"] == rule
    assert step.patch["policy"] == "payments"
    assert step.patch["specDigest"] == spec_digest(state.spec)
    if reason is None:
        assert step.decision is None
        assert step.patch["reviews"] == []
        assert step.wake_at is not None
    else:
        assert step.decision is not None
        assert step.decision.reason == reason
        assert step.patch["decision"]["reason"] == reason
        assert step.wake_at is None


def test_tier2_without_rollback_goes_to_review_with_reason() -> None:
    step = decide([policy()], request("crm.update"), CREATED)
    assert step.patch is not None
    conditions = {c["type"]: c for c in step.patch["conditions"]}
    assert conditions["Classified"]["reason"] == Reason.MISSING_ROLLBACK_PLAN
    assert conditions["Decided"]["status"] == "False"
    assert conditions["Decided"]["reason"] == Reason.MISSING_ROLLBACK_PLAN
    assert step.event is not None
    assert step.event.reason == Reason.MISSING_ROLLBACK_PLAN
    assert step.patch["checklist"] == [i.to_json() for i in DEFAULT_CHECKLIST]


def test_tier4_deadline_is_creation_plus_window_and_rule_overrides_it() -> None:
    money = decide([policy()], request("payments.refund"), at(seconds=3))
    pii = decide([policy()], request("customer.pii.read"), at(seconds=3))
    assert money.patch is not None
    assert pii.patch is not None
    assert money.patch["deadline"] == "2026-11-29T18:15:00Z"
    assert pii.patch["deadline"] == "2026-11-29T18:02:00Z"
    assert money.wake_at == at(minutes=15)


def test_tier3_hold_deadline_is_creation_plus_hold() -> None:
    step = decide([policy()], request("payments.refund", parameters={"amount": 5}), CREATED)
    assert step.patch is not None
    assert step.patch["deadline"] == "2026-11-29T18:05:00Z"
    assert step.patch["conditions"][-1]["reason"] == Reason.IN_VETO_WINDOW


def test_decided_requests_never_change() -> None:
    state = classified(request("db.query"))
    assert decide([policy()], state, at(hours=1)).patch is None
    assert decide([], state, at(hours=1)).patch is None


# -- classification across rules and policies ---------------------------------------------------


def test_first_matching_rule_wins_within_a_policy() -> None:
    p = policy(
        rules=[
            {"name": "first", "actions": ["payments.*"], "tier": 2},
            {"name": "second", "actions": ["payments.refund"], "tier": 4},
        ]
    )
    step = decide([p], request("payments.refund", rollback=True), CREATED)
    assert step.patch is not None
    assert (step.patch["rule"], step.patch["tier"]) == ("first", 2)


def test_highest_tier_across_policies_wins() -> None:
    lax = policy("a-lax", rules=[{"name": "all", "actions": ["*"], "tier": 1}])
    strict = policy("z-strict", rules=[{"name": "money", "actions": ["payments.*"], "tier": 4}])
    step = decide([lax, strict], request("payments.refund"), CREATED)
    assert step.patch is not None
    assert (step.patch["policy"], step.patch["tier"]) == ("z-strict", 4)
    step = decide([strict, lax], request("db.query"), CREATED)
    assert step.patch is not None
    # z-strict matches nothing for db.query, so its defaultTier 4 still wins: no shadowing.
    assert (step.patch["policy"], step.patch["tier"]) == ("z-strict", 4)


def test_equal_tiers_go_to_the_stricter_lane() -> None:
    one = policy("a", tiers={"tier4": {"approvals": 1}})
    two = policy("b", tiers={"tier4": {"approvals": 2}})
    step = decide([one, two], request("payments.refund"), CREATED)
    assert step.patch is not None
    assert (step.patch["policy"], step.patch["requiredApprovals"]) == ("b", 2)


def test_targets_narrow_a_rule() -> None:
    step = decide(
        [policy(defaultTier=2)],
        request("payments.refund", target="paypal:x", rollback=True),
        CREATED,
    )
    assert step.patch is not None
    assert (step.patch["rule"], step.patch["tier"]) == (None, 2)


def test_when_false_falls_through_to_the_next_rule() -> None:
    step = decide([policy()], request("payments.refund", parameters={"amount": 500}), CREATED)
    assert step.patch is not None
    assert step.patch["rule"] == "money"


def test_when_that_cannot_be_evaluated_fails_closed_to_tier4() -> None:
    step = decide([policy()], request("payments.refund", parameters={"currency": "USD"}), CREATED)
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["rule"]) == (4, "small-refunds")
    classified_condition = step.patch["conditions"][0]
    assert classified_condition["reason"] == Reason.FAIL_CLOSED
    assert "no such key 'amount'" in classified_condition["message"]


def test_policy_with_bad_cel_is_not_ready_and_governs_as_tier4() -> None:
    broken = policy(rules=[
        {"name": "reads", "actions": ["db.query"], "tier": 1},
        {"name": "confident", "actions": ["payments.*"], "when": "confidence > 0.9", "tier": 1},
    ])  # fmt: skip
    assert not broken.ready
    assert "confidence" in broken.errors[0]
    step = decide([broken], request("db.query"), CREATED)
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["phase"]) == (4, Phase.AWAITING_APPROVAL)
    assert step.patch["conditions"][0]["reason"] == Reason.FAIL_CLOSED


def test_no_policy_is_denied() -> None:
    step = decide([], request("db.query"), CREATED)
    assert step.decision is not None
    assert step.decision.reason == Reason.NO_POLICY
    assert step.patch is not None
    assert step.patch["phase"] == Phase.DENIED


def test_a_policy_for_another_agent_does_not_govern() -> None:
    step = decide([policy()], request("db.query", agent="other-agent"), CREATED)
    assert step.decision is not None
    assert step.decision.reason == Reason.NO_POLICY


def test_audit_policies_are_recorded_in_shadow_and_never_decide() -> None:
    audit = policy(
        "strict-audit", mode="Audit", rules=[{"name": "all", "actions": ["*"], "tier": 4}]
    )
    step = decide([policy(), audit], request("db.query"), CREATED)
    assert step.decision is not None
    assert step.decision.reason == Reason.AUTO_APPROVED
    assert step.patch is not None
    assert step.patch["shadow"] == [
        {"policy": "strict-audit", "tier": 4, "oversight": "HITL", "rule": "all",
         "message": "rule all matched db.query"},
    ]  # fmt: skip
    only_audit = decide([audit], request("db.query"), CREATED)
    assert only_audit.decision is not None
    assert only_audit.decision.reason == Reason.NO_POLICY
    assert only_audit.patch is not None
    assert only_audit.patch["shadow"][0]["tier"] == 4


# -- reviews ------------------------------------------------------------------------------------


def tier4(**spec: Any) -> tuple[RequestState, Any]:
    policies = [policy(**spec)]
    return classified(request("payments.refund"), policies), policies


@pytest.mark.parametrize(
    ("reviews", "reason", "by"),
    [
        ([approve("alice")], "HumanApproved", ["alice"]),
        ([deny("alice")], "HumanDenied", ["alice"]),
        ([approve("alice"), deny("bob")], "HumanDenied", ["bob"]),
        ([deny("bob"), approve("alice")], "HumanDenied", ["bob"]),
        ([approve("mallory")], None, None),
        ([approve(REQUESTER)], None, None),
        ([approve("alice", ["what", "impact"])], None, None),
        ([approve("alice", [])], None, None),
        ([approve("alice", [*ACK_ALL, "extra"])], "HumanApproved", ["alice"]),
        ([{"reviewer": "alice", "decision": "Maybe"}], None, None),
        ([deny("mallory")], None, None),
    ],
)
def test_tier4_reviews(
    reviews: list[dict[str, Any]], reason: str | None, by: list[str] | None
) -> None:
    state, policies = tier4()
    step = decide(policies, reviewed(state, *reviews), at(minutes=1))
    if reason is None:
        assert step.decision is None
        assert step.wake_at == at(minutes=15)
        assert step.patch is not None  # the Decided message says what did not count
        assert "not counted" in step.patch["conditions"][-1]["message"]
    else:
        assert step.decision is not None
        assert step.decision.reason == reason
        assert step.patch is not None
        assert step.patch["decision"]["by"] == by


def test_quorum_needs_distinct_reviewers() -> None:
    state, policies = tier4(tiers={"tier4": {"approvals": 2}})
    twice = reviewed(state, approve("alice"), approve("alice"))
    assert decide(policies, twice, at(minutes=1)).decision is None
    both = reviewed(twice, approve("bob"))
    step = decide(policies, both, at(minutes=1))
    assert step.decision is not None
    assert step.decision.reason == Reason.HUMAN_APPROVED
    assert step.decision.by == ("alice", "bob")


def test_progress_message_is_only_written_when_it_changes() -> None:
    state, policies = tier4(tiers={"tier4": {"approvals": 2}})
    once = reviewed(state, approve("alice"))
    step = decide(policies, once, at(minutes=1))
    assert step.patch is not None
    assert "1 of 2" in step.patch["conditions"][-1]["message"]
    again = decide(policies, applied(once, step), at(minutes=2))
    assert again.patch is None
    assert again.wake_at == at(minutes=15)


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (at(minutes=15, microseconds=-1), None),
        (at(minutes=15), "Expired"),
        (at(hours=5), "Expired"),
    ],
)
def test_window_boundary(when: Any, reason: str | None) -> None:
    state, policies = tier4()
    step = decide(policies, state, when)
    assert (step.decision.reason if step.decision else None) == reason
    if reason:
        assert step.patch is not None
        assert step.patch["phase"] == Phase.DENIED


def test_an_expired_request_is_never_approved_even_with_approvals_in_hand() -> None:
    state, policies = tier4()
    step = decide(policies, reviewed(state, approve("alice")), at(minutes=15))
    assert step.decision is not None
    assert step.decision.reason == Reason.EXPIRED


def test_a_deny_still_counts_at_the_deadline() -> None:
    state, policies = tier4()
    step = decide(policies, reviewed(state, deny("alice")), at(minutes=15))
    assert step.decision is not None
    assert step.decision.reason == Reason.HUMAN_DENIED


def test_tier3_hotl_hold() -> None:
    policies = [policy()]
    state = classified(request("payments.refund", parameters={"amount": 5}), policies)
    assert decide(policies, state, at(minutes=4)).decision is None
    passed = decide(policies, state, at(minutes=5))
    assert passed.decision is not None
    assert passed.decision.reason == Reason.NOT_VETOED
    vetoed = decide(policies, reviewed(state, deny("carol")), at(minutes=1))
    assert vetoed.decision is not None
    assert vetoed.decision.reason == Reason.VETOED
    early = decide(policies, reviewed(state, approve("carol")), at(minutes=1))
    assert early.decision is not None
    assert early.decision.reason == Reason.HUMAN_APPROVED


def test_tier3_hitl_waits_for_approvals_in_its_own_window() -> None:
    policies = [
        policy(tiers={"tier3": {"oversight": "HITL", "decisionWindow": "30m", "approvals": 1}})
    ]
    state = classified(request("payments.refund", parameters={"amount": 5}), policies)
    assert state.status["phase"] == Phase.AWAITING_APPROVAL
    assert state.status["oversight"] == Oversight.HITL
    assert state.status["deadline"] == "2026-11-29T18:30:00Z"
    step = decide(policies, reviewed(state, approve("bob")), at(minutes=29))
    assert step.decision is not None
    assert step.decision.reason == Reason.HUMAN_APPROVED
    expired = decide(policies, state, at(minutes=30))
    assert expired.decision is not None
    assert expired.decision.reason == Reason.EXPIRED


def test_tier2_without_rollback_can_be_approved_by_a_person() -> None:
    policies = [policy()]
    state = classified(request("crm.update"), policies)
    step = decide(policies, reviewed(state, approve("alice")), at(minutes=1))
    assert step.decision is not None
    assert step.decision.reason == Reason.HUMAN_APPROVED


def test_reviews_already_there_at_classification_are_judged_in_the_same_write() -> None:
    state = reviewed(request("payments.refund"), approve("alice"))
    step = decide([policy()], state, at(minutes=1))
    assert step.decision is not None
    assert step.decision.reason == Reason.HUMAN_APPROVED
    assert step.patch is not None
    assert step.patch["tier"] == 4
    assert step.patch["phase"] == Phase.APPROVED


def test_a_policy_deleted_while_waiting_leaves_no_reviewers_and_it_expires() -> None:
    state, _ = tier4()
    assert decide([], reviewed(state, approve("alice")), at(minutes=1)).decision is None
    step = decide([], state, at(minutes=15))
    assert step.decision is not None
    assert step.decision.reason == Reason.EXPIRED


# -- tally --------------------------------------------------------------------------------------


def test_group_reviewers_are_vouched_for_by_admission() -> None:
    reviewers = Reviewers(groups=frozenset({"payments-approvers"}))
    counted = tally(
        [Review("dave", "Approve", frozenset(ACK_ALL))], reviewers, DEFAULT_CHECKLIST, REQUESTER
    )
    assert counted.approvers == ("dave",)


def test_tally_explains_what_did_not_count() -> None:
    reviewers = Reviewers(users=frozenset({"alice"}))
    counted = tally(
        [
            Review("mallory", "Approve", frozenset(ACK_ALL)),
            Review("alice", "Approve", frozenset({"what"})),
        ],
        reviewers,
        DEFAULT_CHECKLIST,
        REQUESTER,
    )
    assert counted.approvers == ()
    assert counted.ignored == (
        "mallory: not a reviewer of this policy",
        "alice: did not acknowledge impact, rollback",
    )


def test_condition_transition_time_moves_only_with_status() -> None:
    state, policies = tier4(tiers={"tier4": {"approvals": 2}})
    first = state.status["conditions"][-1]["lastTransitionTime"]
    step = decide(policies, reviewed(state, approve("alice")), at(minutes=3))
    assert step.patch is not None
    assert step.patch["conditions"][-1]["lastTransitionTime"] == first


def test_a_spent_budget_sends_tier1_and_tier2_to_a_person() -> None:
    budgeted = policy(budgets=[{"name": "reads", "actions": ["db.*"], "max": 2, "per": "1h"}])
    under = replace(request("db.query"), budget_usage={("payments", "reads"): 1})
    assert decide([budgeted], under, CREATED).decision is not None
    spent = replace(request("db.query"), budget_usage={("payments", "reads"): 2})
    step = decide([budgeted], spent, CREATED)
    assert step.decision is None
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["oversight"], step.patch["phase"]) == (
        1,
        "HITL",
        "AwaitingApproval",
    )
    assert step.patch["conditions"][-1]["reason"] == Reason.BUDGET_EXCEEDED
    assert "budget reads (2 per 1h) is spent" in step.patch["conditions"][-1]["message"]
    other = replace(request("crm.update", rollback=True), budget_usage={("payments", "reads"): 99})
    assert decide([budgeted], other, CREATED).decision is not None  # the budget does not cover it


def test_a_reviewer_whose_name_is_part_of_the_requesters_still_counts() -> None:
    """The requester is one name, not a string to search in: "ali" is not "alice"."""
    reviewers = Reviewers(users=frozenset({"ali", "alice"}))
    reviews = [Review("ali", "Approve", frozenset(ACK_ALL)),
               Review("alice", "Approve", frozenset(ACK_ALL))]  # fmt: skip
    counted = tally(reviews, reviewers, DEFAULT_CHECKLIST, "alice")
    assert counted.approvers == ("ali",)
    assert counted.ignored == ("alice: the requester cannot review its own request",)

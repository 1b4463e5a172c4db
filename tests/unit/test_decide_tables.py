"""The decision core's whole answer, row by row, with a fixed clock.

Every row checks the outcome, the phase, both conditions (status, reason and message), the
decision as written (outcome, reason, by, at, message), the Event and the wake-up time, and the
same invariants hold on every row: the decision, the Decided condition and the Event say the same
thing, each condition moved at ``now`` (to the second) for this generation, and a waiting request
wakes at its deadline.
"""

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from handoff.domain.breakglass import POST_INCIDENT_ACTION, POST_INCIDENT_CHECKLIST
from handoff.domain.decide import decide
from handoff.domain.model import Event, RequestState, Step
from handoff.domain.policy import CompiledPolicy
from handoff.domain.reasons import Transition
from handoff.domain.timefmt import format_time, parse_time

from .helpers import (
    CREATED,
    applied,
    approve,
    at,
    deny,
    policy,
    request,
    reviewed,
    transition_of,
)

BUDGET = [{"name": "reads", "actions": ["db.*", "crm.*", "payments.*"], "max": 2, "per": "1h"}]
KUBE = {"kubernetes": {"kinds": ["apps/v1/Deployment"]}}
SCALE = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "replicas": 2}
PIR_ACKS = [item.id for item in POST_INCIDENT_CHECKLIST]


def summary(step: Step) -> tuple[Any, ...]:
    """(phase, (outcome, reason, by) or None, Classified, Decided) with each condition as
    (status, reason, message), or None when the patch does not carry it."""
    assert step.patch is not None
    conditions = {
        c["type"]: (c["status"], c["reason"], c["message"]) for c in step.patch["conditions"]
    }
    decision = step.patch.get("decision")
    brief = (decision["outcome"], decision["reason"], decision["by"]) if decision else None
    return step.patch.get("phase"), brief, conditions.get("Classified"), conditions["Decided"]


def check_invariants(step: Step, state: RequestState, now: datetime) -> None:
    assert step.patch is not None
    assert step.transition is transition_of(state, step)
    assert step.started_waiting is (step.transition is Transition.STARTED_WAITING)
    decided = next(c for c in step.patch["conditions"] if c["type"] == "Decided")
    before = {c["type"]: c for c in state.status.get("conditions", [])}
    for condition in step.patch["conditions"]:
        old = before.get(condition["type"])
        if condition == old:
            continue  # untouched by this step
        assert condition["observedGeneration"] == state.generation
        if old is not None and old["status"] == condition["status"]:
            assert condition["lastTransitionTime"] == old["lastTransitionTime"]
        else:  # new, or its status flipped: it moved now, to the second
            assert condition["lastTransitionTime"] == format_time(now.replace(microsecond=0))
    if step.decision is None:
        assert "decision" not in step.patch
        if "phase" in step.patch:  # classified now: an Event says what it waits for
            assert step.event == Event("Normal", decided["reason"], decided["message"])
        else:  # a progress note on a waiting request: no Event for it
            assert step.event is None
        assert decided["status"] == "False"
        deadline = step.patch.get("deadline") or state.status["deadline"]
        assert step.wake_at == parse_time(deadline)
        return
    assert step.patch["decision"] == step.decision.to_json()
    assert sorted(step.patch["decision"]) == ["at", "by", "message", "outcome", "reason"]
    assert step.patch["decision"]["at"] == format_time(now)
    assert step.decision.at == now
    assert step.decision.message == decided["message"]
    assert (decided["status"], decided["reason"]) == ("True", step.decision.reason)
    assert step.patch["phase"] == step.decision.outcome  # Approved or Denied, as the outcome
    kind = "Normal" if step.decision.outcome == "Approved" else "Warning"
    assert step.event == Event(kind, step.decision.reason, step.decision.message)
    assert step.wake_at is None


def budgeted(
    used: int | None, action: str = "db.query", rollback: bool = False
) -> tuple[list[CompiledPolicy], RequestState]:
    """A policy whose budget ``reads`` (2 an hour) has been used ``used`` times (None: never),
    and a request."""
    usage = {} if used is None else {("payments", "reads"): used}
    state = replace(request(action, rollback=rollback), budget_usage=usage)
    return [policy(budgets=BUDGET)], state


# -- at classification --------------------------------------------------------------------------

T4_WAIT = "needs 1 approval(s) by 2026-11-29T18:15:00Z, else Denied (Expired)"


@pytest.mark.parametrize(
    ("policies", "state", "expected"),
    [
        pytest.param([policy()], request("db.query"), (
            "Approved", ("Approved", "AutoApproved", []),
            ("True", "RuleMatched", "rule reads matched db.query"),
            ("True", "AutoApproved", "rule reads matched db.query; approved, HOOTL"),
        ), id="tier 1"),
        pytest.param([policy(defaultTier=1)], request("email.send"), (
            "Approved", ("Approved", "AutoApproved", []),
            ("True", "DefaultTier", "no rule matched email.send; defaultTier 1"),
            ("True", "AutoApproved", "no rule matched email.send; defaultTier 1; approved, HOOTL"),
        ), id="tier 1 by default"),
        pytest.param([policy()], request("crm.update", rollback=True), (
            "Approved", ("Approved", "Logged", []),
            ("True", "RuleMatched", "rule crm-edits matched crm.update"),
            ("True", "Logged", "rule crm-edits matched crm.update; approved and logged with its rollback"),
        ), id="tier 2 with a rollback"),
        pytest.param([policy()], request("crm.update"), (
            "AwaitingApproval", None,
            ("True", "MissingRollbackPlan", "rule crm-edits matched crm.update"),
            ("False", "MissingRollbackPlan",
             "rule crm-edits matched crm.update; tier 2 needs a rollback plan, so a person decides"),
        ), id="tier 2 without a rollback"),
        pytest.param([policy()], request("payments.refund", parameters={"amount": 5}), (
            "Queued", None,
            ("True", "RuleMatched", "rule small-refunds matched payments.refund"),
            ("False", "InVetoWindow", "rule small-refunds matched payments.refund;"
             " approved at 2026-11-29T18:05:00Z unless a reviewer denies"),
        ), id="tier 3 hold"),
        pytest.param([policy(tiers={"tier3": {"oversight": "HITL", "approvals": 2}})],
                     request("payments.refund", parameters={"amount": 5}), (
            "AwaitingApproval", None,
            ("True", "RuleMatched", "rule small-refunds matched payments.refund"),
            ("False", "AwaitingReview", "rule small-refunds matched payments.refund;"
             " needs 2 approval(s) by 2026-11-29T18:30:00Z, else Denied (Expired)"),
        ), id="tier 3 HITL"),
        pytest.param([policy()], request("payments.refund"), (
            "AwaitingApproval", None,
            ("True", "RuleMatched", "rule money matched payments.refund"),
            ("False", "AwaitingReview", f"rule money matched payments.refund; {T4_WAIT}"),
        ), id="tier 4"),
        pytest.param([policy()], request("email.send"), (
            "AwaitingApproval", None,
            ("True", "DefaultTier", "no rule matched email.send; defaultTier 4"),
            ("False", "AwaitingReview", f"no rule matched email.send; defaultTier 4; {T4_WAIT}"),
        ), id="tier 4 by default"),
        pytest.param([policy(rules=[{"name": "x", "actions": ["a"], "tier": 9}])], request("db.query"), (
            "AwaitingApproval", None,
            ("True", "FailClosed", "policy payments is not Ready, so tier 4 (fail closed)"),
            ("False", "AwaitingReview", f"policy payments is not Ready, so tier 4 (fail closed); {T4_WAIT}"),
        ), id="a broken policy fails closed"),
        pytest.param([], request("db.query"), (
            "Denied", ("Denied", "NoPolicy", []),
            ("False", "NoPolicy", "no Enforce policy in agents governs agent payments-agent"),
            ("True", "NoPolicy", "no Enforce policy in agents governs agent payments-agent"),
        ), id="no policy"),
        pytest.param([policy(mode="Audit")], request("db.query", agent="robot"), (
            "Denied", ("Denied", "NoPolicy", []),
            ("False", "NoPolicy", "no Enforce policy in agents governs agent robot"),
            ("True", "NoPolicy", "no Enforce policy in agents governs agent robot"),
        ), id="no policy for this agent"),
        pytest.param(*budgeted(2), (
            "AwaitingApproval", None,
            ("True", "BudgetExceeded", "rule reads matched db.query"),
            ("False", "BudgetExceeded",
             "rule reads matched db.query; budget reads (2 per 1h) is spent, so a person decides"),
        ), id="tier 1 past its budget"),
        pytest.param(*budgeted(1), (
            "Approved", ("Approved", "AutoApproved", []),
            ("True", "RuleMatched", "rule reads matched db.query"),
            ("True", "AutoApproved", "rule reads matched db.query; approved, HOOTL"),
        ), id="tier 1 within its budget"),
    ],
)  # fmt: skip
def test_classification(
    policies: list[CompiledPolicy], state: RequestState, expected: tuple[Any, ...]
) -> None:
    step = decide(policies, state, CREATED)
    assert summary(step) == expected
    check_invariants(step, state, CREATED)
    assert step.patch is not None
    assert "shadow" not in step.patch  # no Audit policy has anything to say


@pytest.mark.parametrize(
    ("action", "used", "rollback", "expected"),
    [
        ("db.query", None, False, ("Approved", "AutoApproved")),  # not used yet
        ("crm.update", 2, True, ("AwaitingApproval", "BudgetExceeded")),
        ("crm.update", 1, True, ("Approved", "Logged")),
        ("crm.update", 5, False, ("AwaitingApproval", "BudgetExceeded")),
        ("payments.refund", 5, False, ("AwaitingApproval", "AwaitingReview")),  # tier 4: no budget
        ("kb.search", 5, False, ("Approved", "AutoApproved")),  # not covered by the budget
    ],
)
def test_budgets_apply_to_tiers_1_and_2_only(
    action: str, used: int | None, rollback: bool, expected: tuple[str, str]
) -> None:
    policies, state = budgeted(used, action, rollback)
    step = decide(policies, state, CREATED)
    phase, _, _, decided = summary(step)
    assert (phase, decided[1]) == expected
    check_invariants(step, state, CREATED)


def test_a_budget_of_a_policy_that_does_not_decide_does_not_count() -> None:
    other = policy("other", agents={"serviceAccounts": ["someone-else"]}, budgets=BUDGET)
    state = replace(request("db.query"), budget_usage={("other", "reads"): 9, ("payments", "x"): 9})
    step = decide([other, policy()], state, CREATED)
    assert summary(step)[1] == ("Approved", "AutoApproved", [])


def test_a_spent_budget_on_tier3_changes_nothing() -> None:
    policies, state = budgeted(9, "payments.refund")
    state = replace(state, facts=replace(state.facts, parameters={"amount": 5}))
    assert summary(decide(policies, state, CREATED))[3][1] == "InVetoWindow"


@pytest.mark.parametrize(
    ("rules", "rollback"),
    [
        ([{"name": "all", "actions": ["*"], "tier": 1}], False),
        ([{"name": "all", "actions": ["*"], "tier": 2}], True),
        ([{"name": "all", "actions": ["*"], "tier": 3}], False),
    ],
)
def test_a_post_incident_review_always_waits_a_week_for_a_person(
    rules: list[dict[str, Any]], rollback: bool
) -> None:
    state = request(POST_INCIDENT_ACTION, target="actionrequest/refund-1", rollback=rollback)
    step = decide([policy(rules=rules)], state, CREATED)
    message = "post-incident review of actionrequest/refund-1: tier 4 for the policy's reviewers"
    assert summary(step) == (
        "AwaitingApproval",
        None,
        ("True", "PostIncidentReview", message),
        ("False", "AwaitingReview",
         f"{message}; needs 1 approval(s) by 2026-12-06T18:00:00Z, else Denied (Expired)"),
    )  # fmt: skip
    check_invariants(step, state, CREATED)
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["oversight"], step.patch["rule"]) == (4, "HITL", None)
    assert step.patch["checklist"] == [item.to_json() for item in POST_INCIDENT_CHECKLIST]
    assert step.patch["requiredApprovals"] == 1


@pytest.mark.parametrize(
    ("spec", "state", "expected"),
    [
        pytest.param({"executors": KUBE}, request("kubernetes.scale", execution="Kubernetes",
                     parameters=SCALE | {"kind": "StatefulSet"}),
                     ("Denied", "DefaultTier", "apps/v1/StatefulSet"), id="a kind the policy does not allow"),
        pytest.param({"executors": KUBE}, request("kubernetes.scale", execution="Kubernetes",
                     parameters=SCALE | {"namespace": "kube-system"}),
                     ("Denied", "DefaultTier", "kube-system"), id="a namespace the policy does not allow"),
        pytest.param({"executors": KUBE}, request("kubernetes.scale", execution="Kubernetes",
                     parameters={"replicas": 2}),
                     ("Denied", "DefaultTier", "kubernetes.scale"), id="not a change at all"),
        pytest.param({}, request("kubernetes.scale", execution="Kubernetes", parameters=SCALE),
                     ("Denied", "DefaultTier", "apps/v1/Deployment"), id="a policy with no kinds"),
        pytest.param({}, request("payments.refund", execution="Webhook"), ("Denied", "RuleMatched",
                     "policy payments names no webhook executor (spec.executors.webhook)"),
                     id="Webhook without a webhook executor"),
        pytest.param({"executors": KUBE}, request("kubernetes.scale", execution="Kubernetes",
                     parameters=SCALE), ("AwaitingApproval", "DefaultTier", None), id="an allowed change"),
        pytest.param({"executors": {"webhook": {"url": "https://x.example"}}},
                     request("payments.refund", execution="Webhook"), ("AwaitingApproval", "RuleMatched", None),
                     id="Webhook with a webhook executor"),
        pytest.param({}, request("payments.refund", execution="Agent"), ("AwaitingApproval", "RuleMatched", None),
                     id="the agent runs it itself"),
    ],
)  # fmt: skip
def test_the_executor_gate(spec: dict[str, Any], state: RequestState, expected: Any) -> None:
    step = decide([policy(**spec)], state, CREATED)
    check_invariants(step, state, CREATED)
    phase, decision, classified, decided = summary(step)
    want_phase, reason, problem = expected
    assert (phase, classified[:2]) == (want_phase, ("True", reason))
    if problem is None:
        assert decision is None
        return
    assert decision == ("Denied", "Invalid", [])
    assert decided[:2] == ("True", "Invalid")
    assert problem in decided[2]
    assert step.patch is not None
    assert step.patch["tier"] == 4  # classified as usual, then refused
    assert step.patch["policy"] == "payments"


def test_an_invalid_request_under_a_broken_policy_says_it_failed_closed() -> None:
    broken = policy(rules=[{"name": "x", "actions": ["a"], "tier": 9}])
    state = request("payments.refund", execution="Webhook")
    step = decide([broken], state, CREATED)
    assert summary(step)[2][:2] == ("True", "FailClosed")
    assert summary(step)[3][:2] == ("True", "Invalid")


# -- the waiting lane's settings as written in the status -------------------------------------


@pytest.mark.parametrize(
    ("spec", "state", "expected"),
    [
        pytest.param({}, request("payments.refund"),
                     {"deadline": "2026-11-29T18:15:00Z", "requiredApprovals": 1,
                      "checklist": ["what", "impact", "rollback"]}, id="tier 4 defaults"),
        pytest.param({"tiers": {"tier4": {"escalateAfter": "5m", "escalateTo": ["sre", "cto"],
                                          "minReviewSeconds": 20}}}, request("payments.refund"),
                     {"escalation": {"at": "2026-11-29T18:05:00Z", "to": ["sre", "cto"]},
                      "minReviewSeconds": 20}, id="escalation and a minimum review time"),
        pytest.param({"tiers": {"tier4": {"escalateAfter": "14m59s"}}}, request("payments.refund"),
                     {"escalation": {"at": "2026-11-29T18:14:59Z", "to": []}},
                     id="escalation a second before the deadline"),
        pytest.param({"tiers": {"tier4": {"escalateAfter": "15m", "escalateTo": ["sre"]}}},
                     request("payments.refund"), {"escalation": None},
                     id="no escalation at or after the deadline"),
        pytest.param({"tiers": {"tier4": {"escalateAfter": "5m", "escalateTo": ["sre"],
                                          "minReviewSeconds": 20}},
                      "rules": [{"name": "big", "actions": ["payments.*"], "tier": 4,
                                 "approvals": 2, "decisionWindow": "1h",
                                 "checklist": [{"id": "ticket", "text": "There is a ticket"}]}]},
                     request("payments.refund"),
                     {"deadline": "2026-11-29T19:00:00Z", "requiredApprovals": 2,
                      "checklist": ["ticket"], "minReviewSeconds": 20,
                      "escalation": {"at": "2026-11-29T18:05:00Z", "to": ["sre"]}},
                     id="a rule's own approvals, window and checklist keep the lane's escalation"),
        pytest.param({"tiers": {"tier3": {"oversight": "HOTL", "holdFor": "2m", "decisionWindow": "1h"}}},
                     request("payments.refund", parameters={"amount": 5}),
                     {"deadline": "2026-11-29T18:02:00Z"}, id="a hold ends at holdFor"),
        pytest.param({"tiers": {"tier3": {"oversight": "HITL", "decisionWindow": "1h"}}},
                     request("payments.refund", parameters={"amount": 5}),
                     {"deadline": "2026-11-29T19:00:00Z"}, id="tier 3 HITL waits its window"),
        pytest.param({"tiers": {"tier4": {"decisionWindow": "1h", "approvals": 3}},
                      "budgets": BUDGET}, replace(request("db.query"),
                     budget_usage={("payments", "reads"): 2}),
                     {"deadline": "2026-11-29T19:00:00Z", "requiredApprovals": 3,
                      "oversight": "HITL", "tier": 1}, id="a spent budget waits in tier 4's lane"),
        pytest.param({"tiers": {"tier4": {"decisionWindow": "1h", "approvals": 2}},
                      "rules": [{"name": "crm", "actions": ["crm.*"], "tier": 2, "approvals": 3}]},
                     request("crm.update"),
                     {"deadline": "2026-11-29T19:00:00Z", "requiredApprovals": 3, "tier": 2},
                     id="tier 2 without a rollback waits in tier 4's lane with its rule's approvals"),
        pytest.param({}, reviewed(request("payments.refund"), deny("mallory")),
                     {"reviews": None}, id="reviews already there are kept"),
    ],
)  # fmt: skip
def test_what_a_waiting_request_records(
    spec: dict[str, Any], state: RequestState, expected: dict[str, Any]
) -> None:
    step = decide([policy(**spec)], state, CREATED)
    check_invariants(step, state, CREATED)
    assert step.patch is not None
    got = {key: step.patch.get(key) for key in expected}
    if "checklist" in got:
        got["checklist"] = [item["id"] for item in got["checklist"]]
    assert got == expected
    if "reviews" not in expected:
        assert step.patch["reviews"] == []
    if "minReviewSeconds" not in expected:
        assert "minReviewSeconds" not in step.patch


# -- reviews ------------------------------------------------------------------------------------


def waiting(
    spec: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[list[CompiledPolicy], RequestState]:
    policies = [policy(**(spec or {}))]
    state = request(**kwargs) if kwargs else request("payments.refund")
    step = decide(policies, state, CREATED)
    return policies, applied(state, step)


TWO = {"tiers": {"tier4": {"approvals": 2}}}
THREE = {"tiers": {"tier4": {"approvals": 3}}}
HOLD = {"action": "payments.refund", "parameters": {"amount": 5}}
HOLD_TWO = {"tiers": {"tier3": {"approvals": 2}}}
GLASS = {"reviewer": "sre-dave", "decision": "Approve", "breakGlass": True,
         "acknowledged": ["what", "impact", "rollback"]}  # fmt: skip
PROGRESS = "{} of 2 approval(s) by 2026-11-29T18:15:00Z, else Denied (Expired)"
HOLDING = "approved at 2026-11-29T18:05:00Z unless a reviewer denies"


@pytest.mark.parametrize(
    ("lane", "reviews", "now", "expected"),
    [
        pytest.param((None, {}), [approve("alice")], at(minutes=3),
                     ("Approved", ("Approved", "HumanApproved", ["alice"]), ("True", "HumanApproved", "approved by alice")),
                     id="one approval"),
        pytest.param((TWO, {}), [approve("bob"), approve("alice")], at(minutes=3),
                     ("Approved", ("Approved", "HumanApproved", ["bob", "alice"]),
                      ("True", "HumanApproved", "approved by bob, alice")), id="two approvals"),
        pytest.param((None, {}), [GLASS], at(minutes=3),
                     ("Approved", ("Approved", "BreakGlassApproved", ["sre-dave"]),
                      ("True", "BreakGlassApproved", "approved by sre-dave; under break-glass: sre-dave")),
                     id="break-glass"),
        pytest.param((TWO, {}), [approve("alice"), GLASS], at(minutes=3),
                     ("Approved", ("Approved", "BreakGlassApproved", ["alice", "sre-dave"]),
                      ("True", "BreakGlassApproved", "approved by alice, sre-dave; under break-glass: sre-dave")),
                     id="break-glass with a reviewer"),
        pytest.param((TWO, {}), [GLASS, GLASS | {"reviewer": "sre-erin"}], at(minutes=3),
                     ("Approved", ("Approved", "BreakGlassApproved", ["sre-dave", "sre-erin"]),
                      ("True", "BreakGlassApproved",
                       "approved by sre-dave, sre-erin; under break-glass: sre-dave, sre-erin")),
                     id="two under break-glass"),
        pytest.param((THREE, {}), [approve("alice"), approve("bob")], at(minutes=3),
                     (None, None, None, ("False", "AwaitingReview",
                      "2 of 3 approval(s) by 2026-11-29T18:15:00Z, else Denied (Expired)"
                      "; approved so far by alice, bob")), id="two of three"),
        pytest.param((TWO, {}), [approve("mallory"), approve("alice", [])], at(minutes=3),
                     (None, None, None, ("False", "AwaitingReview", PROGRESS.format(0) +
                      "; not counted: mallory: not a reviewer of this policy"
                      "; alice: did not acknowledge impact, rollback, what")), id="two not counted"),
        pytest.param((None, {}), [approve("alice"), deny("bob")], at(minutes=3),
                     ("Denied", ("Denied", "HumanDenied", ["bob"]), ("True", "HumanDenied", "bob denied it")),
                     id="a deny"),
        pytest.param((None, {}), [deny("carol"), deny("bob")], at(minutes=3),
                     ("Denied", ("Denied", "HumanDenied", ["carol"]), ("True", "HumanDenied", "carol denied it")),
                     id="the first deny"),
        pytest.param((None, HOLD), [deny("carol")], at(minutes=3),
                     ("Denied", ("Denied", "Vetoed", ["carol"]), ("True", "Vetoed", "carol vetoed it")),
                     id="a veto"),
        pytest.param((None, HOLD), [], at(minutes=5),
                     ("Approved", ("Approved", "NotVetoed", []), ("True", "NotVetoed", "the hold passed with no veto")),
                     id="the hold passes"),
        pytest.param((TWO, {}), [approve("alice")], at(minutes=15),
                     ("Denied", ("Denied", "Expired", []), ("True", "Expired",
                      "the decision window closed at 2026-11-29T18:15:00Z with 1 of 2 approval(s): denied, fail safe")),
                     id="expired"),
        pytest.param((TWO, {}), [approve("alice")], at(minutes=3),
                     (None, None, None, ("False", "AwaitingReview", PROGRESS.format(1) + "; approved so far by alice")),
                     id="one of two"),
        pytest.param((TWO, {}), [approve("alice"), approve("mallory")], at(minutes=3),
                     (None, None, None, ("False", "AwaitingReview", PROGRESS.format(1) +
                      "; approved so far by alice; not counted: mallory: not a reviewer of this policy")),
                     id="one of two and one not counted"),
        pytest.param((TWO, {}), [{"reviewer": "bob", "decision": "Maybe"}], at(minutes=3),
                     (None, None, None, ("False", "AwaitingReview", PROGRESS.format(0) +
                      "; not counted: bob: decision 'Maybe' is neither Approve nor Deny")),
                     id="neither approve nor deny"),
        pytest.param((HOLD_TWO, HOLD), [approve("alice")], at(minutes=3),
                     (None, None, None, ("False", "InVetoWindow", HOLDING)), id="a hold needing two"),
        pytest.param((None, HOLD), [approve("mallory")], at(minutes=3),
                     (None, None, None, ("False", "InVetoWindow", HOLDING +
                      "; not counted: mallory: not a reviewer of this policy")), id="a hold, not counted"),
        pytest.param((None, {"action": "crm.update"}), [approve("mallory")], at(minutes=3),
                     (None, None, None, ("False", "MissingRollbackPlan",
                      "0 of 1 approval(s) by 2026-11-29T18:15:00Z, else Denied (Expired)"
                      "; not counted: mallory: not a reviewer of this policy")),
                     id="tier 2 keeps its waiting reason"),
    ],
)  # fmt: skip
def test_judging_reviews(
    lane: tuple[dict[str, Any] | None, dict[str, Any]],
    reviews: list[dict[str, Any]],
    now: datetime,
    expected: tuple[Any, ...],
) -> None:
    policies, state = waiting(lane[0], **lane[1])
    state = reviewed(state, *reviews)
    step = decide(policies, state, now)
    phase, decision, classified, decided = summary(step)
    assert (phase, decision, None, decided) == (
        expected[0],
        expected[1],
        None,
        expected[-1],
    )  # the Classified condition is left as it was
    assert classified == summary_of(state)
    check_invariants(step, state, now)


def summary_of(state: RequestState) -> Any:
    return next(
        (c["status"], c["reason"], c["message"]) for c in state.status["conditions"]
        if c["type"] == "Classified"
    )  # fmt: skip


def test_a_post_incident_review_is_for_the_normal_reviewers_only() -> None:
    policies, state = waiting(action=POST_INCIDENT_ACTION, target="actionrequest/r")
    glass = decide(policies, reviewed(state, GLASS | {"acknowledged": PIR_ACKS}), at(hours=1))
    assert glass.decision is None
    looked = decide(policies, reviewed(state, approve("alice", PIR_ACKS)), at(hours=1))
    assert looked.decision is not None
    assert looked.decision.reason == "HumanApproved"
    too_little = decide(policies, reviewed(state, approve("alice")), at(hours=1))
    assert too_little.decision is None  # the usual checklist is not the post-incident one


def test_a_decision_keeps_microseconds_but_conditions_move_to_the_second() -> None:
    policies, state = waiting()
    now = at(minutes=3, microseconds=500)
    step = decide(policies, reviewed(state, approve("alice")), now)
    assert step.patch is not None
    assert step.patch["decision"]["at"] == "2026-11-29T18:03:00.000500Z"
    times = {c["type"]: c["lastTransitionTime"] for c in step.patch["conditions"]}
    assert times == {"Classified": "2026-11-29T18:00:00Z", "Decided": "2026-11-29T18:03:00Z"}


def test_the_transition_time_stays_while_the_status_does_not_flip() -> None:
    policies, state = waiting(TWO)
    first = reviewed(state, approve("alice"))
    step = decide(policies, first, at(minutes=3))
    assert step.patch is not None
    [classified, decided] = step.patch["conditions"]
    assert classified == state.status["conditions"][0]
    assert decided["lastTransitionTime"] == "2026-11-29T18:00:00Z"  # still False
    assert decided["observedGeneration"] == 1
    later = replace(applied(first, step), generation=3)
    done = decide(policies, reviewed(later, approve("bob")), at(minutes=4))
    assert done.patch is not None
    assert done.patch["conditions"][-1]["lastTransitionTime"] == "2026-11-29T18:04:00Z"
    assert done.patch["conditions"][-1]["observedGeneration"] == 3


def test_other_conditions_are_kept_and_the_updated_one_goes_last() -> None:
    policies, state = waiting()
    other = {"type": "Executed", "status": "True", "reason": "X", "message": "m"}
    status = dict(state.status)
    status["conditions"] = [state.status["conditions"][1], other, state.status["conditions"][0]]
    step = decide(
        policies, reviewed(replace(state, status=status), approve("alice")), at(minutes=1)
    )
    assert step.patch is not None
    assert [c["type"] for c in step.patch["conditions"]] == ["Executed", "Classified", "Decided"]


@pytest.mark.parametrize(
    ("reviews", "patched"),
    [([], False), ([approve("mallory")], True)],
)
def test_a_waiting_request_is_rewritten_only_when_its_progress_changes(
    reviews: list[dict[str, Any]], patched: bool
) -> None:
    policies, state = waiting()
    step = decide(policies, reviewed(state, *reviews), at(minutes=1))
    assert (step.patch is not None) is patched
    assert step.wake_at == at(minutes=15)
    assert step.decision is None
    assert (step.event is None) is True


@pytest.mark.parametrize(
    ("reviews", "expected"),
    [
        pytest.param([approve("alice")], (
            "Approved", ("Approved", "HumanApproved", ["alice"]),
            ("True", "RuleMatched", "rule money matched payments.refund"),
            ("True", "HumanApproved", "approved by alice"),
        ), id="approved in the same write"),
        pytest.param([deny("bob")], (
            "Denied", ("Denied", "HumanDenied", ["bob"]),
            ("True", "RuleMatched", "rule money matched payments.refund"),
            ("True", "HumanDenied", "bob denied it"),
        ), id="denied in the same write"),
        pytest.param([approve("mallory")], (
            "AwaitingApproval", None,
            ("True", "RuleMatched", "rule money matched payments.refund"),
            ("False", "AwaitingReview", f"rule money matched payments.refund; {T4_WAIT}"),
        ), id="still waiting: the classification's own words"),
        pytest.param([deny("carol")], (
            "Denied", ("Denied", "Vetoed", ["carol"]),
            ("True", "RuleMatched", "rule small-refunds matched payments.refund"),
            ("True", "Vetoed", "carol vetoed it"),
        ), id="vetoed in the same write"),
    ],
)  # fmt: skip
def test_reviews_there_before_classification(
    reviews: list[dict[str, Any]], expected: tuple[Any, ...]
) -> None:
    hold = expected[1] is not None and expected[1][1] == "Vetoed"
    state = request("payments.refund", parameters={"amount": 5} if hold else None)
    state = reviewed(state, *reviews)
    now = at(minutes=1)
    step = decide([policy()], state, now)
    assert summary(step) == expected
    check_invariants(step, state, now)
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["deadline"], step.patch["requiredApprovals"]) == (
        (3, "2026-11-29T18:05:00Z", 1) if hold else (4, "2026-11-29T18:15:00Z", 1)
    )
    assert "reviews" not in step.patch  # the reviews already there are not overwritten
    assert "shadow" not in step.patch


def test_a_budget_of_one_is_not_spent_before_its_first_use() -> None:
    one = [policy(budgets=[BUDGET[0] | {"max": 1}])]
    assert summary(decide(one, request("db.query"), CREATED))[1] == ("Approved", "AutoApproved", [])
    spent = replace(request("db.query"), budget_usage={("payments", "reads"): 1})
    assert summary(decide(one, spent, CREATED))[3][1] == "BudgetExceeded"


def test_a_tier1_rule_past_its_budget_waits_in_the_policys_tier4_lane_not_its_own() -> None:
    rules = [
        {"name": "reads", "actions": ["db.*"], "tier": 1, "approvals": 3, "decisionWindow": "1h"}
    ]
    policies = [policy(rules=rules, budgets=BUDGET, tiers={"tier4": {"approvals": 2}})]
    state = replace(request("db.query"), budget_usage={("payments", "reads"): 2})
    step = decide(policies, state, CREATED)
    assert step.patch is not None
    assert (step.patch["requiredApprovals"], step.patch["deadline"]) == (2, "2026-11-29T18:15:00Z")


def test_a_waiting_request_that_lost_its_decided_condition_gets_one_back() -> None:
    policies, state = waiting(TWO)
    status = dict(state.status)
    status["conditions"] = [c for c in status["conditions"] if c["type"] != "Decided"]
    step = decide(
        policies, reviewed(replace(state, status=status), approve("alice")), at(minutes=1)
    )
    assert summary(step)[3] == (
        "False",
        "AwaitingReview",
        PROGRESS.format(1) + "; approved so far by alice",
    )


# -- which transition a step makes --------------------------------------------------------------


def decided_state() -> RequestState:
    state = request("db.query")
    return applied(state, decide([policy()], state, CREATED))


def waiting_state(*reviews: dict[str, Any], **kwargs: Any) -> RequestState:
    return reviewed(waiting(**kwargs)[1], *reviews)


# Each row: the request, the time, and (transition, started_waiting, phase written or None,
# Decided reason or None when nothing is written). What follows a step (announce it, arm or
# stop a timer) is chosen from its transition, never from the keys its patch happens to carry.
@pytest.mark.parametrize(
    ("state", "now", "expected"),
    [
        pytest.param(request("db.query"), CREATED,
                     (Transition.DECIDED, False, "Approved", "AutoApproved"),
                     id="approved as it is classified"),
        pytest.param(request("db.query", agent="robot"), CREATED,
                     (Transition.DECIDED, False, "Denied", "NoPolicy"), id="no policy"),
        pytest.param(request("payments.refund", execution="Webhook"), CREATED,
                     (Transition.DECIDED, False, "Denied", "Invalid"), id="refused as invalid"),
        pytest.param(reviewed(request(), approve("alice")), at(minutes=1),
                     (Transition.DECIDED, False, "Approved", "HumanApproved"),
                     id="approved by reviews there before classification: it never waited"),
        pytest.param(request(), CREATED,
                     (Transition.STARTED_WAITING, True, "AwaitingApproval", "AwaitingReview"),
                     id="tier 4 starts waiting"),
        pytest.param(request(parameters={"amount": 5}), CREATED,
                     (Transition.STARTED_WAITING, True, "Queued", "InVetoWindow"),
                     id="tier 3 HOTL starts its hold"),
        pytest.param(request("crm.update"), CREATED,
                     (Transition.STARTED_WAITING, True, "AwaitingApproval", "MissingRollbackPlan"),
                     id="tier 2 without a rollback starts waiting"),
        pytest.param(waiting_state(approve("alice")), at(minutes=3),
                     (Transition.DECIDED_AFTER_WAITING, False, "Approved", "HumanApproved"),
                     id="approved after waiting"),
        pytest.param(waiting_state(deny("bob")), at(minutes=3),
                     (Transition.DECIDED_AFTER_WAITING, False, "Denied", "HumanDenied"),
                     id="denied after waiting"),
        pytest.param(waiting_state(), at(minutes=15),
                     (Transition.DECIDED_AFTER_WAITING, False, "Denied", "Expired"),
                     id="expired"),
        pytest.param(waiting_state(**HOLD), at(minutes=5),
                     (Transition.DECIDED_AFTER_WAITING, False, "Approved", "NotVetoed"),
                     id="the hold passed"),
        pytest.param(waiting_state(approve("mallory")), at(minutes=3),
                     (Transition.PROGRESSED, False, None, "AwaitingReview"),
                     id="a review that does not count: progress noted"),
        pytest.param(waiting_state(), at(minutes=3), (Transition.NONE, False, None, None),
                     id="still waiting, nothing new"),
        pytest.param(decided_state(), at(days=30), (Transition.NONE, False, None, None),
                     id="decided before"),
    ],
)  # fmt: skip
def test_the_transition_a_step_makes(
    state: RequestState, now: datetime, expected: tuple[Any, ...]
) -> None:
    step = decide([policy()], state, now)
    assert step.transition is transition_of(state, step)
    if step.patch is None:
        assert (step.transition, step.started_waiting, None, None) == expected
        assert step.decision is None
        assert step.event is None
        return
    phase, _, _, decided = summary(step)
    assert (step.transition, step.started_waiting, phase, decided[1]) == expected
    check_invariants(step, state, now)


def test_a_tier2_judged_as_it_is_classified_says_why_people_decided_it() -> None:
    state = reviewed(request("crm.update"), approve("alice"))
    step = decide([policy()], state, at(minutes=1))
    assert summary(step) == (
        "Approved", ("Approved", "HumanApproved", ["alice"]),
        ("True", "MissingRollbackPlan", "rule crm-edits matched crm.update"),
        ("True", "HumanApproved", "approved by alice"),
    )  # fmt: skip
    assert step.transition is Transition.DECIDED
    check_invariants(step, state, at(minutes=1))


def test_the_requesters_own_review_there_before_classification_does_not_count() -> None:
    agent = "system:serviceaccount:agents:payments-agent"
    policies = [policy(reviewers={"users": ["alice", agent]})]
    own = {"reviewer": agent, "decision": "Approve", "acknowledged": ["what", "impact", "rollback"]}
    state = reviewed(request(), own)
    step = decide(policies, state, at(minutes=1))
    assert summary(step) == (
        "AwaitingApproval", None,
        ("True", "RuleMatched", "rule money matched payments.refund"),
        ("False", "AwaitingReview", f"rule money matched payments.refund; {T4_WAIT}"),
    )  # fmt: skip
    assert step.transition is Transition.STARTED_WAITING
    check_invariants(step, state, at(minutes=1))
    # and once it waits, the same review is named as not counted
    later = decide(policies, applied(state, step), at(minutes=2))
    assert later.decision is None
    assert summary(later)[3] == (
        "False", "AwaitingReview",
        f"0 of 1 approval(s) by 2026-11-29T18:15:00Z, else Denied (Expired); not counted: {agent}:"
        " the requester cannot review its own request",
    )  # fmt: skip

"""The pure core of standing grants (domain/grants.py): reading an ActionGrant, its bounds
against the rule as it is now, its fit to the request that prompted it, which requests it
covers, and the approval it turns a waiting step into. Table by table, then properties: a
grant never covers a request outside its bounds."""

import glob
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from handoff.domain.classify import RequestFacts
from handoff.domain.globs import Glob
from handoff.domain.grants import (
    Grant,
    GrantError,
    approve,
    bounds_problem,
    covers,
    holds,
    no_grant_covers,
    prompt_problem,
    usable,
)
from handoff.domain.model import Event, Step
from handoff.domain.policy import compile_policy
from handoff.domain.reasons import Outcome, Reason, Transition
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NS = "agents"


def grant_json(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "namespace": NS, "name": "g1", "creationTimestamp": "2026-12-01T12:00:00Z",
            "resourceVersion": "41",
        },
        "spec": {
            "grantedBy": "alice", "agent": "payments-agent", "action": "payments.refund",
            "policy": "payments", "rule": "small-refunds", "target": "stripe:charge/*",
            "expiresAt": "2026-12-01T13:00:00Z", "maxUses": 3, "request": "refund-1",
        },
    }  # fmt: skip
    body["spec"] |= spec
    return body


GRANT = replace(Grant.from_json(grant_json()), checked=True)
FACTS = RequestFacts(NS, "payments-agent", "payments.refund", "stripe:charge/ch_1", {"amount": 5})
CLASSIFIED = ("payments", "small-refunds")


def test_read_from_json() -> None:
    body = grant_json(condition="parameters.amount <= 10")
    body["status"] = {"usedBy": [{"uid": "u1"}, {"uid": "u2"}], "checked": True}
    grant = Grant.from_json(body)
    assert grant == Grant(
        namespace=NS, name="g1", author="alice", agent="payments-agent",
        action="payments.refund", policy="payments", rule="small-refunds",
        target=grant.target, condition="parameters.amount <= 10", created=T0,
        expires=T0 + timedelta(hours=1), max_uses=3, prompted_by="refund-1",
        used_by=("u1", "u2"), checked=True, refused=None, resource_version="41",
    )  # fmt: skip
    assert grant.target.pattern == "stripe:charge/*"
    assert (grant.used, grant.ref) == (2, "actiongrant/g1")
    plain = Grant.from_json(grant_json(condition=""))
    assert (plain.condition, plain.used, plain.checked, plain.refused) == (None, 0, False, None)
    assert Grant.from_json(grant_json() | {"status": {"refused": "no"}}).refused == "no"
    assert Grant.from_json(grant_json() | {"status": {"checked": "yes"}}).checked is False
    bare = grant_json()
    del bare["metadata"]["resourceVersion"]
    assert Grant.from_json(bare).resource_version == ""


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"name": "g1"}},
        grant_json(maxUses="many"),
        grant_json(expiresAt="tomorrow"),
        {"metadata": {"name": "g1", "namespace": NS}, "spec": None},
    ],
)
def test_a_malformed_grant_is_refused_by_name(body: dict[str, Any]) -> None:
    with pytest.raises(GrantError, match=r"^actiongrant 'g1' is malformed: "):
        Grant.from_json(body)


def policy_with(grantable: dict[str, Any] | None) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "small-refunds", "actions": ["payments.refund"], "tier": 4}
    if grantable is not None:
        rule["grantable"] = grantable
    return {"payments": compile_policy(NS, "payments", {"rules": [rule]})}


@pytest.mark.parametrize(
    ("grantable", "grant", "problem"),
    [
        ({"maxDuration": "1h", "maxCount": 3}, GRANT, None),
        ({"maxDuration": "2h", "maxCount": 9}, GRANT, None),
        (None, GRANT, "rule small-refunds of policy payments is not grantable"),
        ({"maxDuration": "59m59s", "maxCount": 3}, GRANT,
         "it lasts longer than rule small-refunds's grantable.maxDuration"),
        ({"maxDuration": "1h", "maxCount": 2}, GRANT,
         "its maxUses is over rule small-refunds's grantable.maxCount"),
        ({"maxDuration": "1h", "maxCount": 3}, replace(GRANT, rule="other"),
         "policy payments has no rule other"),
        ({"maxDuration": "1h", "maxCount": 3}, replace(GRANT, policy="other"),
         "policy other has no rule small-refunds"),
    ],
)  # fmt: skip
def test_bounds_against_the_rule_as_it_is_now(
    grantable: dict[str, Any] | None, grant: Grant, problem: str | None
) -> None:
    assert bounds_problem(grant, policy_with(grantable)) == problem


def prompt(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"namespace": NS, "name": "refund-1"},
        "spec": {"agent": "payments-agent", "action": "payments.refund",
                 "target": "stripe:charge/ch_0"},
        "status": {"policy": "payments", "rule": "small-refunds",
                   "reviews": [{"reviewer": "bob", "decision": "Deny"},
                               {"reviewer": "alice", "decision": "Approve"}]},
    }  # fmt: skip
    for where, values in changes.items():
        body[where] = body[where] | values
    return body


APPROVED = {
    "policy": "payments", "rule": "small-refunds", "requiredApprovals": 1,
    "reviews": [{"reviewer": "alice", "decision": "Approve"}],
    "decision": {"outcome": "Approved", "reason": "HumanApproved", "by": ["alice"]},
}  # fmt: skip
WIDER = "it is not for the agent, action, policy and rule of refund-1"
NOT_HOLDING = "its target or condition does not hold for refund-1 itself"


@pytest.mark.parametrize(
    ("body", "grant", "condition", "problem"),
    [
        (prompt(), GRANT, None, None),
        (prompt(status=APPROVED), GRANT, None, None),
        (prompt(status=APPROVED | {"decision": {"outcome": "Denied", "reason": "HumanDenied",
                                                "by": ["bob"]}}),
         GRANT, None, "alice's approval did not decide refund-1 (it was decided Denied,"
         " HumanDenied, by bob): a grant comes only from an approval that counted"),
        (prompt(status=APPROVED | {"decision": {"outcome": "Approved", "reason": "HumanApproved",
                                                "by": ["bob"]}}),
         GRANT, None, "alice's approval did not decide refund-1 (it was decided Approved,"
         " HumanApproved, by bob): a grant comes only from an approval that counted"),
        (prompt(status=APPROVED | {"requiredApprovals": 2}), GRANT, None,
         "refund-1 needs 2 approvals: a grant is one person's approval and cannot stand in for 2"),
        (prompt(status=APPROVED | {"stages": [{"name": "manager"}, {"name": "finance"}]}), GRANT,
         None, "refund-1 is approved in stages (manager, finance): a grant is one person's"
         " approval and cannot stand in for every stage"),
        (prompt(), replace(GRANT, condition="x"), True, None),
        (prompt(), replace(GRANT, condition="x"), False, NOT_HOLDING),
        (prompt(), replace(GRANT, condition="x"), "broken", NOT_HOLDING),
        (prompt(spec={"target": "paypal:ch_0"}), GRANT, None, NOT_HOLDING),
        (prompt(metadata={"namespace": "other"}), GRANT, None, WIDER),
        (prompt(spec={"agent": "other-agent"}), GRANT, None, WIDER),
        (prompt(spec={"action": "payments.charge"}), GRANT, None, WIDER),
        (prompt(status={"policy": "other", "rule": "small-refunds"}), GRANT, None, WIDER),
        (prompt(status={"policy": "payments", "rule": "other"}), GRANT, None, WIDER),
        (prompt(status={"policy": "payments", "rule": "small-refunds",
                        "reviews": [{"reviewer": "alice", "decision": "Deny"},
                                    {"reviewer": "bob", "decision": "Approve"}]}),
         GRANT, None, "alice did not approve refund-1"),
        (prompt(status={"reviews": []}), GRANT, None, "alice did not approve refund-1"),
        ({"metadata": {"namespace": NS}}, GRANT, None, WIDER),
    ],
)  # fmt: skip
def test_no_wider_than_the_request_that_prompted_it(
    body: dict[str, Any], grant: Grant, condition: bool | str | None, problem: str | None
) -> None:
    assert prompt_problem(grant, body, condition) == problem


@pytest.mark.parametrize(
    ("grant", "facts", "classified", "now", "condition", "covered"),
    [
        (GRANT, FACTS, CLASSIFIED, T0, None, True),
        (GRANT, FACTS, CLASSIFIED, T0 + timedelta(minutes=59, seconds=59), None, True),
        (GRANT, FACTS, CLASSIFIED, T0 + timedelta(hours=1), None, False),  # expired
        (GRANT, FACTS, CLASSIFIED, T0 - timedelta(seconds=1), None, False),  # not yet
        (replace(GRANT, used_by=("a", "b")), FACTS, CLASSIFIED, T0, None, True),
        (replace(GRANT, used_by=("a", "b", "c")), FACTS, CLASSIFIED, T0, None, False),
        (replace(GRANT, checked=False), FACTS, CLASSIFIED, T0, None, False),
        (replace(GRANT, refused="wider"), FACTS, CLASSIFIED, T0, None, False),
        (GRANT, replace(FACTS, namespace="other"), CLASSIFIED, T0, None, False),
        (GRANT, replace(FACTS, agent="other"), CLASSIFIED, T0, None, False),
        (GRANT, replace(FACTS, action="payments.charge"), CLASSIFIED, T0, None, False),
        (GRANT, replace(FACTS, target="stripe:payout/p1"), CLASSIFIED, T0, None, False),
        (GRANT, FACTS, ("payments", "money"), T0, None, False),
        (GRANT, FACTS, ("other", "small-refunds"), T0, None, False),
        (GRANT, FACTS, ("payments", None), T0, None, False),
        (replace(GRANT, condition="c"), FACTS, CLASSIFIED, T0, True, True),
        (replace(GRANT, condition="c"), FACTS, CLASSIFIED, T0, False, False),
        (replace(GRANT, condition="c"), FACTS, CLASSIFIED, T0, "could not", False),
        (replace(GRANT, condition="c"), FACTS, CLASSIFIED, T0, None, False),  # never evaluated
    ],
)  # fmt: skip
def test_covers(
    grant: Grant, facts: RequestFacts, classified: tuple[str, str | None], now: datetime,
    condition: bool | str | None, covered: bool,
) -> None:  # fmt: skip
    assert covers(grant, facts, classified, now, condition) is covered


def test_holds() -> None:
    assert holds(GRANT, None)
    assert holds(GRANT, False)
    assert holds(replace(GRANT, condition="c"), True)
    assert not holds(replace(GRANT, condition="c"), "True")


@pytest.mark.parametrize(
    ("grant", "now", "active"),
    [
        (GRANT, T0, True),
        (replace(GRANT, checked=False), T0, True),  # not checked yet: its first use checks it
        (GRANT, T0 + timedelta(hours=1), False),
        (GRANT, T0 - timedelta(seconds=1), False),
        (replace(GRANT, used_by=("a", "b")), T0, True),
        (replace(GRANT, used_by=("a", "b", "c")), T0, False),
        (replace(GRANT, refused="no"), T0, False),
    ],
)
def test_usable(grant: Grant, now: datetime, active: bool) -> None:
    assert usable(grant, now) is active


def test_approve_turns_the_waiting_step_into_its_decision() -> None:
    classified = {"type": "Classified", "status": "True", "reason": "RuleMatched",
                  "message": "m", "observedGeneration": 2}  # fmt: skip
    waiting = Step(
        patch={
            "tier": 4, "policy": "payments", "rule": "small-refunds", "specDigest": "sha",
            "phase": "AwaitingApproval", "deadline": "d", "requiredApprovals": 1,
            "checklist": [], "reviews": [], "minReviewSeconds": 5, "escalation": {},
            "conditions": [classified, {"type": "Decided", "status": "False"}],
        },
        event=Event("Normal", "AwaitingReview", "waits"), wake_at=T0,
        transition=Transition.STARTED_WAITING,
    )  # fmt: skip
    now = T0 + timedelta(minutes=1, microseconds=5)
    step = approve(waiting, GRANT, 2, now)
    message = (
        "approved in advance by alice with actiongrant/g1 (use 2 of 3, until 2026-12-01T13:00:00Z)"
    )
    assert step.decision is not None
    assert step.decision.by == ("alice", "actiongrant/g1")
    assert (step.decision.outcome, step.decision.reason) == (Outcome.APPROVED, "GrantApproved")
    assert step.decision.at == now
    assert step.patch == {
        "tier": 4, "policy": "payments", "rule": "small-refunds", "specDigest": "sha",
        "phase": "Approved", "decision": step.decision.to_json(),
        "conditions": [classified, {
            "type": "Decided", "status": "True", "reason": "GrantApproved", "message": message,
            "lastTransitionTime": "2026-12-01T12:01:00Z", "observedGeneration": 2,
        }],
    }  # fmt: skip
    assert step.decision.message == message
    assert step.event == Event("Normal", Reason.GRANT_APPROVED, message)
    assert (step.wake_at, step.transition) == (None, Transition.DECIDED)
    bare = approve(Step(patch={"tier": 4}), GRANT, 1, T0)
    assert bare.patch is not None
    assert "observedGeneration" not in bare.patch["conditions"][0]
    assert len(bare.patch["conditions"]) == 1


# Properties: whatever the grant and the request, a covered request is inside every bound.
names = st.sampled_from(["a", "b", "payments-agent"])
actions = st.sampled_from(["payments.refund", "payments.charge", "x"])
targets = st.sampled_from(["stripe:charge/ch_1", "stripe:payout/1", "paypal:1", ""])
patterns = st.sampled_from(["stripe:charge/*", "stripe:*", "*", "paypal:1", "stripe:charge/ch_1"])
rules = st.sampled_from(["small-refunds", "money", None])
answers = st.sampled_from([True, False, None, "error"])


@st.composite
def grants(draw: st.DrawFn) -> Grant:
    created = T0 + timedelta(minutes=draw(st.integers(-120, 120)))
    uses = draw(st.integers(1, 5))
    return Grant(
        namespace=draw(st.sampled_from([NS, "other"])), name="g", author="alice",
        agent=draw(names), action=draw(actions), policy=draw(st.sampled_from(["payments", "p2"])),
        rule=draw(st.sampled_from(["small-refunds", "money"])),
        target=Glob.compile(draw(patterns)), condition=draw(st.sampled_from([None, "c"])),
        created=created, expires=created + timedelta(minutes=draw(st.integers(0, 240))),
        max_uses=uses, prompted_by="r", used_by=tuple("u" * draw(st.integers(0, 6))),
        checked=draw(st.booleans()), refused=draw(st.sampled_from([None, "no"])),
    )  # fmt: skip


@given(
    grants(),
    st.builds(RequestFacts, namespace=st.sampled_from([NS, "other"]), agent=names,
              action=actions, target=targets),
    st.tuples(st.sampled_from(["payments", "p2"]), rules),
    st.integers(-240, 480),
    answers,
)  # fmt: skip
def test_a_grant_never_covers_a_request_outside_its_bounds(
    grant: Grant, facts: RequestFacts, classified: tuple[str, str | None], minutes: int,
    answer: bool | str | None,
) -> None:  # fmt: skip
    now = T0 + timedelta(minutes=minutes)
    if covers(grant, facts, classified, now, answer):
        assert grant.checked
        assert grant.refused is None
        assert grant.created <= now < grant.expires
        assert grant.used < grant.max_uses
        assert (facts.namespace, facts.agent, facts.action) == (
            grant.namespace, grant.agent, grant.action,
        )  # fmt: skip
        assert classified == (grant.policy, grant.rule)
        assert grant.target.matches(facts.target)
        assert grant.condition is None or answer is True
        assert usable(grant, now)


@pytest.mark.parametrize(
    ("grantable", "expected", "errors"),
    [
        (None, None, ()),
        ({"maxDuration": "4h", "maxCount": 20}, (timedelta(hours=4), 20), ()),
        ({"maxDuration": "10s", "maxCount": 1}, (timedelta(seconds=10), 1), ()),
        ({"maxDuration": "168h", "maxCount": 1000}, (timedelta(hours=168), 1000), ()),
        ({"maxDuration": "4h"}, None,
         ("rule 'r': grantable needs both maxDuration (such as 4h) and maxCount",)),
        ({"maxCount": 2}, None,
         ("rule 'r': grantable needs both maxDuration (such as 4h) and maxCount",)),
        ({"maxDuration": "4h", "maxCount": 0}, None,
         ("rule 'r': grantable.maxCount must be 1 to 1000, not 0",)),
        ({"maxDuration": "4h", "maxCount": 1001}, None,
         ("rule 'r': grantable.maxCount must be 1 to 1000, not 1001",)),
        ({"maxDuration": "9s", "maxCount": 1}, None,
         ("rule 'r': grantable.maxDuration: 9s is outside 10s to 168h",)),
        ({"maxDuration": "soon", "maxCount": 1}, None,
         ("rule 'r': grantable.maxDuration: 'soon' is not a duration like 30s, 15m, 2h or 1h30m",)),
    ],
)  # fmt: skip
def test_a_rule_is_grantable_only_when_it_says_so(
    grantable: dict[str, Any] | None,
    expected: tuple[timedelta, int] | None,
    errors: tuple[str, ...],
) -> None:
    rule: dict[str, Any] = {"name": "r", "actions": ["a"], "tier": 4}
    if grantable is not None:
        rule["grantable"] = grantable
    policy = compile_policy(NS, "p", {"rules": [rule]})
    assert policy.errors == errors
    found = policy.rules[0].grantable
    assert (found and (found.max_duration, found.max_count)) == expected


@pytest.mark.parametrize(
    "crafted",
    [
        "Stripe:charge/ch_[1]",  # case
        "stripe:charge/ch_[1].",  # a trailing dot
        "stripe:charge/ch_[1]\n",  # a trailing newline
        "stripe:charge/ch_[1] ",
        "stripe:charge/ch_1",  # what the brackets would match as a glob class
        "stripe:charge/ch_\uff3b1\uff3d",  # fullwidth brackets
        "stripe:charge/ch_[1]\u200b",  # a zero-width space
        "stripe:charge/ch_[1]\u202e",  # a bidi override
        "stripe\u0131:charge/ch_[1]",  # a dotless i
        "stripe:charge/ch_[1]/../../payout/po_1",
    ],
)
def test_an_exact_grant_covers_no_crafted_look_alike_of_its_target(crafted: str) -> None:
    """The default grant (``--grant`` without ``--target``) is the prompt's target, escaped: a
    request the agent crafts to look like it is not covered."""
    target = "stripe:charge/ch_[1]"
    exact = replace(GRANT, target=Glob.compile(glob.escape(target)), checked=True)
    facts = replace(FACTS, target=target)
    assert covers(exact, facts, CLASSIFIED, T0, None)
    assert not covers(exact, replace(FACTS, target=crafted), CLASSIFIED, T0, None)


def test_no_grant_covers_a_request_nobody_was_stamped_as_filing() -> None:
    """A request without the cluster's requested-by stamp is not the agent's own filing: no
    grant covers it, and the reason says that the stamp is missing."""
    why = no_grant_covers({}, "", "ns", "payments-agent")
    assert why == ("someone the cluster did not stamp filed the request, not payments-agent: a"
                   " grant covers the agent's own only")  # fmt: skip
    assert (
        no_grant_covers({}, "system:serviceaccount:ns:payments-agent", "ns", "payments-agent")
        is None
    )

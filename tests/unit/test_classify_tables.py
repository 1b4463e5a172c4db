"""Classification, table by table: which rule of a policy answers, what the verdict carries (the
rule's own lane settings over the policy's), and which policy wins among several."""

import gc
from datetime import timedelta
from typing import Any

import pytest
from handoff.domain.classify import (
    _INDEXES,
    RequestFacts,
    RuleIndex,
    Verdict,
    classify,
    evaluate,
    rule_index,
)
from handoff.domain.policy import DEFAULT_TIER4, compile_policy
from handoff.domain.policyparts import ChecklistItem, Reviewers
from handoff.domain.reasons import Mode, Oversight

NS = "agents"


def compiled(rules: list[dict[str, Any]], name: str = "p", **spec: Any) -> Any:
    body = {"agents": {"serviceAccounts": ["bot"]}, "rules": rules} | spec
    return compile_policy(NS, name, body, generation=1)  # type: ignore[arg-type]


def facts(action: str = "payments.refund", **kwargs: Any) -> RequestFacts:
    return RequestFacts(NS, kwargs.pop("agent", "bot"), action, **kwargs)


def rule(name: str, tier: int, actions: str = "payments.*", **extra: Any) -> dict[str, Any]:
    return {"name": name, "actions": [actions], "tier": tier} | extra


# Each row: rules, the request's facts -> (tier, rule, fail closed, message).
@pytest.mark.parametrize(
    ("rules", "request_facts", "expected"),
    [
        pytest.param([rule("a", 2, targets=["paypal:*"]), rule("b", 3)], facts(target="stripe:1"),
                     (3, "b", False, "rule b matched payments.refund"),
                     id="a rule for another target is passed over, not the end of the scan"),
        pytest.param([rule("a", 2, targets=["paypal:*", "stripe:*"]), rule("b", 3)], facts(target="stripe:1"),
                     (2, "a", False, "rule a matched payments.refund"), id="any of its targets"),
        pytest.param([rule("a", 2, when="action == 'payments.refund'"), rule("b", 3)], facts(),
                     (2, "a", False, "rule a matched payments.refund"), id="when on the action"),
        pytest.param([rule("a", 2, when="target.startsWith('prod:')"), rule("b", 3)], facts(target="prod:db"),
                     (2, "a", False, "rule a matched payments.refund"), id="when on the target"),
        pytest.param([rule("a", 2, when="target.startsWith('prod:')"), rule("b", 3)], facts(target="dev:db"),
                     (3, "b", False, "rule b matched payments.refund"), id="when on the target, false"),
        pytest.param([rule("a", 2, when="agent == 'bot'"), rule("b", 3)], facts(),
                     (2, "a", False, "rule a matched payments.refund"), id="when on the agent"),
        pytest.param([rule("a", 2, when="labels.team == 'pay'"), rule("b", 3)], facts(labels={"team": "pay"}),
                     (2, "a", False, "rule a matched payments.refund"), id="when on the labels"),
        pytest.param([rule("a", 2, when="labels.team == 'pay'"), rule("b", 3)], facts(labels={"team": "ops"}),
                     (3, "b", False, "rule b matched payments.refund"), id="when on the labels, false"),
        pytest.param([rule("a", 2, when="parameters.amount < 10"), rule("b", 3)], facts(parameters={"amount": 5}),
                     (2, "a", False, "rule a matched payments.refund"), id="when on the parameters"),
        pytest.param([rule("a", 2, when="size(labels) == 0 && size(parameters) == 0"), rule("b", 3)], facts(),
                     (2, "a", False, "rule a matched payments.refund"), id="no labels, no parameters"),
        pytest.param([rule("a", 2, when="parameters.amount < 10"), rule("b", 3)], facts(),
                     (4, "a", True, "rule a: "), id="a when that cannot be evaluated fails closed"),
        pytest.param([rule("a", 1, actions="db.*")], facts(),
                     (4, None, False, "no rule matched payments.refund; defaultTier 4"), id="no rule"),
        pytest.param([rule("a", 9)], facts(),
                     (4, None, True, "policy p is not Ready, so tier 4 (fail closed)"), id="not Ready"),
    ],
)  # fmt: skip
def test_evaluate(rules: list[dict[str, Any]], request_facts: RequestFacts, expected: Any) -> None:
    verdict = evaluate(compiled(rules), request_facts)
    tier, rule_name, fail_closed, message = expected
    assert (verdict.tier, verdict.rule, verdict.fail_closed) == (tier, rule_name, fail_closed)
    if fail_closed and rule_name:
        assert verdict.message.startswith(message)
        assert verdict.message.endswith("; tier 4 (fail closed)")
    else:
        assert verdict.message == message
    assert (verdict.policy, verdict.mode, verdict.reviewers) == ("p", Mode.ENFORCE, Reviewers())
    assert verdict.policy_lane4 == DEFAULT_TIER4


def test_the_default_tier_is_the_policys() -> None:
    verdict = evaluate(compiled([], defaultTier=2), facts())
    assert (verdict.tier, verdict.rule, verdict.message) == (
        2, None, "no rule matched payments.refund; defaultTier 2"
    )  # fmt: skip


LANE4 = {"decisionWindow": "1h", "approvals": 2, "escalateAfter": "10m", "escalateTo": ["sre"],
         "minReviewSeconds": 20, "checklist": [{"id": "ticket", "text": "There is a ticket"}]}  # fmt: skip
LANE3 = {"oversight": "HOTL", "holdFor": "2m", "decisionWindow": "30m", "escalateAfter": "1m",
         "escalateTo": ["ops"], "minReviewSeconds": 5}  # fmt: skip
OWN = {"approvals": 3, "decisionWindow": "2h", "checklist": [{"id": "why", "text": "I know why"}]}


# Each row: the rule's tier and own settings -> the lane of its verdict.
@pytest.mark.parametrize(
    ("tier", "own", "expected"),
    [
        (4, {}, (Oversight.HITL, timedelta(hours=1), 2, ("ticket",), None, timedelta(minutes=10), ("sre",), 20)),
        (4, OWN, (Oversight.HITL, timedelta(hours=2), 3, ("why",), None, timedelta(minutes=10), ("sre",), 20)),
        (4, {"approvals": 1}, (Oversight.HITL, timedelta(hours=1), 1, ("ticket",), None, timedelta(minutes=10), ("sre",), 20)),
        (4, {"checklist": []}, (Oversight.HITL, timedelta(hours=1), 2, (), None, timedelta(minutes=10), ("sre",), 20)),
        (3, {}, (Oversight.HOTL, timedelta(minutes=30), 1, ("what", "impact", "rollback"), timedelta(minutes=2),
                 timedelta(minutes=1), ("ops",), 5)),
        (3, OWN, (Oversight.HOTL, timedelta(hours=2), 3, ("why",), timedelta(minutes=2), timedelta(minutes=1),
                  ("ops",), 5)),
        (2, OWN, (Oversight.HITL, timedelta(hours=2), 3, ("why",), None, timedelta(minutes=10), ("sre",), 20)),
    ],
)  # fmt: skip
def test_a_rules_own_settings_override_its_lane_and_keep_the_rest(
    tier: int, own: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    policy = compiled([rule("r", tier, **own)], tiers={"tier3": LANE3, "tier4": LANE4})
    assert policy.ready, policy.errors
    lane = evaluate(policy, facts()).lane
    got = (lane.oversight, lane.decision_window, lane.approvals, tuple(i.id for i in lane.checklist),
           lane.hold_for, lane.escalate_after, lane.escalate_to, lane.min_review_seconds)  # fmt: skip
    assert got == expected


def test_the_default_tier_takes_the_policys_lane_as_it_is() -> None:
    policy = compiled([], tiers={"tier4": LANE4})
    verdict = evaluate(policy, facts())
    assert verdict.lane == policy.tier4
    assert verdict.policy_lane4 == policy.tier4


@pytest.mark.parametrize(
    ("tier", "lane_oversight", "expected"),
    [(1, Oversight.HITL, Oversight.HOOTL), (2, Oversight.HITL, Oversight.HOTL),
     (3, Oversight.HOTL, Oversight.HOTL), (3, Oversight.HITL, Oversight.HITL),
     (4, Oversight.HOTL, Oversight.HITL)],
)  # fmt: skip
def test_a_verdicts_oversight(tier: int, lane_oversight: Oversight, expected: Oversight) -> None:
    lane = DEFAULT_TIER4.__class__(lane_oversight, timedelta(minutes=1), 1, ())
    verdict = Verdict("p", Mode.ENFORCE, tier, None, lane, Reviewers(), "m")
    assert verdict.oversight is expected
    assert verdict.fail_closed is False


@pytest.mark.parametrize(
    ("spec", "labels", "expected"),
    [
        ({"agent": "bot", "action": "a.b", "target": "t", "parameters": {"x": 1}, "rollback": {"action": "u"}},
         {"team": "pay"}, ("bot", "a.b", "t", {"x": 1}, {"team": "pay"}, True)),
        ({}, None, ("", "", "", {}, {}, False)),
        ({"parameters": None, "rollback": {}}, {}, ("", "", "", {}, {}, False)),
        ({"agent": 7, "action": None, "target": 1.5}, None, ("7", "None", "1.5", {}, {}, False)),
    ],
)  # fmt: skip
def test_facts_from_a_spec(
    spec: dict[str, Any], labels: dict[str, str] | None, expected: tuple[Any, ...]
) -> None:
    read = RequestFacts.from_spec(NS, spec, labels)
    assert read.namespace == NS
    got = (read.agent, read.action, read.target, dict(read.parameters), dict(read.labels),
           read.has_rollback)  # fmt: skip
    assert got == expected
    assert read.variables() == {
        "action": expected[1], "target": expected[2], "parameters": expected[3],
        "agent": expected[0], "labels": expected[4],
    }  # fmt: skip


def test_facts_defaults() -> None:
    bare = RequestFacts(NS, "bot", "a")
    assert (bare.target, dict(bare.parameters), dict(bare.labels), bare.has_rollback) == (
        "", {}, {}, False
    )  # fmt: skip
    assert RequestFacts.from_spec(NS, {}).labels == {}


# -- across policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        pytest.param([("b", 4, 1), ("a", 4, 1)], "a", id="equal: the name first in order"),
        pytest.param([("a", 4, 1), ("b", 4, 2)], "b", id="equal tiers: more approvals"),
        pytest.param([("a", 3, 3), ("b", 4, 1)], "b", id="the higher tier over more approvals"),
        pytest.param([("z", 2, 1), ("a", 1, 1)], "z", id="the higher tier over the name"),
    ],
)
def test_which_policy_wins(policies: list[tuple[str, int, int]], expected: str) -> None:
    compiled_policies = [
        compiled([rule("r", tier, approvals=approvals)], name=name)
        for name, tier, approvals in policies
    ]
    for order in (compiled_policies, compiled_policies[::-1]):
        result = classify(order, facts())
        assert result.verdict is not None
        assert result.verdict.policy == expected
        assert result.shadow == ()


def test_only_policies_that_govern_the_agent_in_its_namespace_count() -> None:
    mine = compiled([rule("r", 2)], name="mine")
    other_agent = compile_policy(NS, "other", {"agents": {"serviceAccounts": ["robot"]},  # type: ignore[arg-type]
                                               "rules": [rule("r", 4)]})  # fmt: skip
    other_ns = compile_policy("elsewhere", "other-ns", {"agents": {"serviceAccounts": ["bot"]},  # type: ignore[arg-type]
                                                        "rules": [rule("r", 4)]})  # fmt: skip
    result = classify([other_agent, other_ns, mine], facts())
    assert result.verdict is not None
    assert (result.verdict.policy, result.verdict.tier) == ("mine", 2)


def test_audit_policies_only_shadow_in_name_order() -> None:
    enforce = compiled([rule("r", 1)], name="m")
    audits = [compiled([rule("r", t)], name=n, mode="Audit") for n, t in (("z", 4), ("a", 3))]
    result = classify([*audits, enforce], facts())
    assert result.verdict is not None
    assert (result.verdict.policy, result.verdict.tier) == ("m", 1)
    assert [(v.policy, v.tier, v.mode) for v in result.shadow] == [
        ("a", 3, Mode.AUDIT), ("z", 4, Mode.AUDIT),
    ]  # fmt: skip
    only = classify(audits, facts())
    assert only.verdict is None
    assert len(only.shadow) == 2


def test_the_rule_index_is_forgotten_with_its_policy() -> None:
    policy = compiled([rule("r", 2)], name="short-lived")
    key = id(policy)
    rule_index(policy)
    assert key in _INDEXES
    del policy
    gc.collect()
    assert key not in _INDEXES


def test_a_rule_that_names_no_override_keeps_the_lane_checklist_item_for_item() -> None:
    policy = compiled([rule("r", 4)], tiers={"tier4": LANE4})
    assert evaluate(policy, facts()).lane.checklist == (
        ChecklistItem("ticket", "There is a ticket"),
    )


def test_the_action_memo_is_forgotten_all_at_once_when_full() -> None:
    index = RuleIndex(compiled([rule("r", 2)]).rules)
    for i in range(RuleIndex.MEMO_SIZE):
        index.candidates(f"payments.{i}")
    assert len(index._memo) == RuleIndex.MEMO_SIZE
    index.candidates("payments.one-more")
    assert list(index._memo) == ["payments.one-more"]

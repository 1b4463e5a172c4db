"""A policy's spec compiled, table by table: each lane setting, rule, notification, budget and
executor as the core reads it, and each problem's exact words (they are the policy's condition
message, which its author reads)."""

from datetime import timedelta
from typing import Any

import pytest
from handoff.domain.executors import KubernetesScope
from handoff.domain.policy import (
    DEFAULT_TIER3,
    DEFAULT_TIER4,
    Budget,
    CompiledPolicy,
    Lane,
    NotificationTarget,
    SecretKey,
    WebhookExecutor,
    compile_policy,
)
from handoff.domain.policyparts import DEFAULT_CHECKLIST, ChecklistItem, Reviewers
from handoff.domain.reasons import Mode, Oversight


def compiled(**spec: Any) -> CompiledPolicy:
    body = {"agents": {"serviceAccounts": ["a"]}} | spec
    return compile_policy("ns", "p", body, generation=3)  # type: ignore[arg-type]


ITEM = [{"id": "ticket", "text": "There is a ticket"}]


@pytest.mark.parametrize(
    ("tier", "raw", "expected"),
    [
        (3, {}, DEFAULT_TIER3),
        (3, None, DEFAULT_TIER3),
        (3, {"oversight": "HOTL", "holdFor": "2m", "decisionWindow": "1h", "approvals": 2,
             "checklist": ITEM, "escalateAfter": "10m", "escalateTo": ["sre"], "minReviewSeconds": 20},
         Lane(Oversight.HOTL, timedelta(hours=1), 2, (ChecklistItem("ticket", "There is a ticket"),),
              timedelta(minutes=2), timedelta(minutes=10), ("sre",), 20)),
        (3, {"oversight": "HITL", "holdFor": "2m"},
         Lane(Oversight.HITL, timedelta(minutes=30), 1, DEFAULT_CHECKLIST)),
        (3, {"oversight": "HITL"}, Lane(Oversight.HITL, timedelta(minutes=30), 1, DEFAULT_CHECKLIST)),
        # holdFor alone: tier 3's oversight is HOTL by default, so the hold applies (the CRD
        # allows it; it used to be refused as "tiers.tier3 is always HITL").
        (3, {"holdFor": "2m"},
         Lane(Oversight.HOTL, timedelta(minutes=30), 1, DEFAULT_CHECKLIST, timedelta(minutes=2))),
        (3, {"holdFor": "2m", "approvals": 2},
         Lane(Oversight.HOTL, timedelta(minutes=30), 2, DEFAULT_CHECKLIST, timedelta(minutes=2))),
        (3, {"oversight": "HOTL", "decisionWindow": "1h"},
         Lane(Oversight.HOTL, timedelta(hours=1), 1, DEFAULT_CHECKLIST, timedelta(minutes=5))),
        (3, {"oversight": "HOTL", "checklist": []},
         Lane(Oversight.HOTL, timedelta(minutes=30), 1, (), timedelta(minutes=5))),
        (4, {"decisionWindow": "2m", "approvals": 3, "escalateAfter": "1m", "escalateTo": ["a", "b"],
             "minReviewSeconds": 5},
         Lane(Oversight.HITL, timedelta(minutes=2), 3, DEFAULT_CHECKLIST, None, timedelta(minutes=1),
              ("a", "b"), 5)),
        (4, {"approvals": 1}, DEFAULT_TIER4),
        (4, {"minReviewSeconds": None, "escalateTo": None}, DEFAULT_TIER4),
    ],
)  # fmt: skip
def test_lanes(tier: int, raw: Any, expected: Lane) -> None:
    policy = compiled(tiers={f"tier{tier}": raw})
    assert policy.errors == ()
    assert (policy.tier3 if tier == 3 else policy.tier4) == expected


# Each row: a spec, the exact errors, and what the compiler used instead.
@pytest.mark.parametrize(
    ("spec", "errors", "check"),
    [
        ({"tiers": {"tier4": {"holdFor": "5m"}}},
         ["tiers.tier4 is always HITL: oversight and holdFor are not allowed there"],
         lambda p: p.tier4 == DEFAULT_TIER4),
        ({"tiers": {"tier4": {"holdFor": "1s"}}},
         ["tiers.tier4 is always HITL: oversight and holdFor are not allowed there"],
         lambda p: p.tier4.hold_for is None),
        ({"tiers": {"tier4": {"oversight": "HITL"}}},
         ["tiers.tier4 is always HITL: oversight and holdFor are not allowed there"],
         lambda p: p.tier4.oversight is Oversight.HITL),
        ({"tiers": {"tier3": {"oversight": "HOOTL"}}},
         ["tiers.tier3.oversight must be HOTL or HITL, not 'HOOTL'"],
         lambda p: p.tier3.oversight is Oversight.HITL and p.tier3.hold_for is None),
        ({"tiers": {"tier3": {"oversight": "bogus", "holdFor": "1m"}}}, [],
         lambda p: p.tier3.oversight is Oversight.HITL and p.tier3.hold_for is None),
        ({"tiers": {"tier4": {"approvals": 0}}}, ["tiers.tier4.approvals must be at least 1, not 0"],
         lambda p: p.tier4.approvals == 1),
        ({"tiers": {"tier4": {"approvals": -2}}}, ["tiers.tier4.approvals must be at least 1, not -2"],
         lambda p: p.tier4.approvals == 1),
        ({"tiers": {"tier4": {"decisionWindow": "5s"}}}, ["tiers.tier4: 5s is outside 10s to 168h"],
         lambda p: p.tier4.decision_window == timedelta(minutes=15)),
        ({"tiers": {"tier4": {"decisionWindow": "169h"}}}, ["tiers.tier4: 169h is outside 10s to 168h"],
         lambda p: p.tier4.decision_window == timedelta(minutes=15)),
        ({"tiers": {"tier4": {"decisionWindow": "10s", "escalateAfter": "168h"}}}, [],
         lambda p: (p.tier4.decision_window, p.tier4.escalate_after) == (timedelta(seconds=10), timedelta(hours=168))),
        ({"tiers": {"tier4": {"decisionWindow": "8d"}}},
         ["tiers.tier4: '8d' is not a duration like 30s, 15m, 2h or 1h30m"],
         lambda p: p.tier4.decision_window == timedelta(minutes=15)),
        ({"tiers": {"tier3": {"oversight": "HOTL", "holdFor": "1s"}}}, ["tiers.tier3: 1s is outside 10s to 168h"],
         lambda p: p.tier3.hold_for == timedelta(minutes=5)),
        ({"tiers": {"tier4": {"escalateAfter": "2s"}}}, ["tiers.tier4: 2s is outside 10s to 168h"],
         lambda p: p.tier4.escalate_after is None),
        ({"tiers": {"tier4": {"checklist": [{"id": "a", "text": "A"}, {"id": "a", "text": "B"}]}}},
         ["tiers.tier4: checklist ids must be unique"], lambda p: len(p.tier4.checklist) == 2),
        ({"defaultTier": 0}, ["defaultTier 0 is not one of 1, 2, 3, 4"], lambda p: p.default_tier == 4),
        ({"defaultTier": 5}, ["defaultTier 5 is not one of 1, 2, 3, 4"], lambda p: p.default_tier == 4),
        ({"defaultTier": 1}, [], lambda p: p.default_tier == 1),
        ({"mode": "Yolo"}, ["mode 'Yolo' is neither Enforce nor Audit"], lambda p: p.mode is Mode.ENFORCE),
        ({"mode": "Audit"}, [], lambda p: p.mode is Mode.AUDIT),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 5}]},
         ["rule 'r': tier 5 is not one of 1, 2, 3, 4"], lambda p: p.rules == ()),
        ({"rules": [{"actions": ["x"], "tier": "4"}]},
         ["rule 'rules[0]': tier '4' is not one of 1, 2, 3, 4"], lambda p: p.rules == ()),
        ({"rules": [{"name": "ok", "actions": ["y"], "tier": 1}, {"actions": [], "tier": 1}]},
         ["rule 'rules[1]': actions must list at least one glob"], lambda p: [r.name for r in p.rules] == ["ok"]),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 4, "approvals": 0}]},
         ["rule 'r': approvals must be at least 1, not 0"], lambda p: p.rules[0].approvals is None),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 4, "decisionWindow": "1s"}]},
         ["rule 'r': 1s is outside 10s to 168h"], lambda p: p.rules[0].decision_window is None),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 4, "checklist": [{"id": "a", "text": "A"}] * 2}]},
         ["rule 'r': checklist ids must be unique"], lambda p: len(p.rules[0].checklist or ()) == 2),
        ({"rules": [{"name": n, "actions": ["x"], "tier": 1} for n in ("b", "a", "b", "a", "c")]},
         ["rule name 'a' is used more than once", "rule name 'b' is used more than once"],
         lambda p: len(p.rules) == 5),
        ({"budgets": [{"name": "b", "actions": ["x"], "max": 1, "per": "1s"}]},
         ["budget 'b': 1s is outside 10s to 168h"], lambda p: p.budgets == ()),
    ],
)  # fmt: skip
def test_problems_and_what_is_used_instead(
    spec: dict[str, Any], errors: list[str], check: Any
) -> None:
    policy = compiled(**spec)
    assert list(policy.errors) == errors
    assert policy.ready is (not errors)
    assert check(policy)


def test_a_rule_compiled() -> None:
    policy = compiled(rules=[
        {"name": "big", "actions": ["payments.*", "refunds.*"], "targets": ["stripe:*"], "tier": 4,
         "when": "parameters.amount > 100", "decisionWindow": "1h", "approvals": 2, "checklist": ITEM},
        {"name": "plain", "actions": ["db.query"], "tier": 1},
    ])  # fmt: skip
    big, plain = policy.rules
    assert (big.name, big.tier, [g.pattern for g in big.actions], [g.pattern for g in big.targets]) == (
        "big", 4, ["payments.*", "refunds.*"], ["stripe:*"]
    )  # fmt: skip
    assert big.when is not None
    assert big.when.source == "parameters.amount > 100"
    assert (big.decision_window, big.approvals, big.checklist) == (
        timedelta(hours=1), 2, (ChecklistItem("ticket", "There is a ticket"),)
    )  # fmt: skip
    assert (plain.targets, plain.when, plain.decision_window, plain.approvals, plain.checklist) == (
        (), None, None, None, None
    )  # fmt: skip


def test_the_rest_of_a_policy_compiled() -> None:
    secret = {"name": "hooks", "key": "url"}
    hmac = {"name": "hooks", "key": "hmac"}
    policy = compiled(
        agents={"serviceAccounts": ["a", "b"]},
        reviewers={"users": ["alice"], "groups": ["approvers"]},
        notifications=[
            {"name": "slack", "format": "Slack", "urlSecretRef": secret, "events": ["Decided"]},
            {"name": "json", "url": "https://x.example", "hmacSecretRef": hmac},
            {"name": "app", "format": "SlackApp", "channel": "C0PAYMENTS"},
        ],
        budgets=[{"name": "reads", "actions": ["db.*", "kb.*"], "max": "5", "per": "1h"}],
        executors={"kubernetes": {"kinds": ["apps/v1/Deployment"], "namespaces": ["web"]},
                   "webhook": {"url": "https://run.example", "urlSecretRef": secret, "hmacSecretRef": hmac}},
    )  # fmt: skip
    assert policy.errors == ()
    assert (policy.namespace, policy.name, policy.generation) == ("ns", "p", 3)
    assert policy.service_accounts == frozenset({"a", "b"})
    assert policy.reviewers == Reviewers(frozenset({"alice"}), frozenset({"approvers"}))
    assert policy.notifications == (
        NotificationTarget("slack", "Slack", None, SecretKey("hooks", "url"), None, frozenset({"Decided"})),
        NotificationTarget("json", "JSON", "https://x.example", None, SecretKey("hooks", "hmac"),
                           frozenset({"Pending", "Escalated"})),
        NotificationTarget("app", "SlackApp", channel="C0PAYMENTS"),
    )  # fmt: skip
    [budget] = policy.budgets
    assert (budget.name, [g.pattern for g in budget.actions], budget.max, budget.per) == (
        "reads", ["db.*", "kb.*"], 5, timedelta(hours=1)
    )  # fmt: skip
    assert policy.kubernetes == KubernetesScope(
        frozenset({"apps/v1/Deployment"}), frozenset({"web"})
    )
    assert policy.webhook == WebhookExecutor(
        "https://run.example", SecretKey("hooks", "url"), SecretKey("hooks", "hmac")
    )


def test_an_empty_policy_compiled() -> None:
    policy = compile_policy("ns", "p", {})  # type: ignore[typeddict-item]
    assert policy.errors == ()
    assert (policy.generation, policy.service_accounts, policy.reviewers) == (
        0,
        frozenset(),
        Reviewers(),
    )
    assert (policy.notifications, policy.budgets, policy.webhook, policy.rules) == (
        (),
        (),
        None,
        (),
    )
    assert policy.kubernetes == KubernetesScope()
    assert not policy.reviewers
    assert not policy.governs("ns", "")


@pytest.mark.parametrize(
    ("namespace", "agent", "governs"),
    [("ns", "a", True), ("ns", "b", False), ("other", "a", False)],
)
def test_which_agents_a_policy_governs(namespace: str, agent: str, governs: bool) -> None:
    assert compiled().governs(namespace, agent) is governs


@pytest.mark.parametrize(
    ("tier", "lane"),
    [(1, "tier4"), (2, "tier4"), (3, "tier3"), (4, "tier4")],
)
def test_the_lane_of_each_tier(tier: int, lane: str) -> None:
    policy = compiled(tiers={"tier3": {"oversight": "HITL"}, "tier4": {"approvals": 2}})
    assert policy.lane(tier) == getattr(policy, lane)


@pytest.mark.parametrize(
    ("reviewers", "truthy"),
    [(Reviewers(), False), (Reviewers(users=frozenset({"a"})), True), (Reviewers(groups=frozenset({"g"})), True)],
)  # fmt: skip
def test_reviewers_are_truthy_when_named(reviewers: Reviewers, truthy: bool) -> None:
    assert bool(reviewers) is truthy


def test_a_budget_covers_its_actions() -> None:
    [budget] = compiled(
        budgets=[{"name": "b", "actions": ["db.*", "kb.search"], "max": 1, "per": "1m"}]
    ).budgets
    assert isinstance(budget, Budget)
    assert [budget.covers(a) for a in ("db.query", "kb.search", "kb.searchx", "crm.update")] == [
        True, True, False, False
    ]  # fmt: skip


def test_a_checklist_item_as_json() -> None:
    assert ChecklistItem("a", "A").to_json() == {"id": "a", "text": "A"}

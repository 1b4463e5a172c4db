"""The rule index and the shared CEL bindings give the answers of a plain first-match scan."""

import random
from typing import Any

import pytest
from handoff.controller.reports import DecidedRequests
from handoff.domain.classify import RequestFacts, RuleIndex, evaluate, rule_index
from handoff.domain.expressions import Bindings, ExpressionError, compile_expression
from handoff.domain.globs import any_match
from handoff.domain.policy import compile_policy

GLOBS = ["payments.*", "payments.refund", "*.delete", "db.*.read", "db.query", "*", "crm.up*",
         "kb.search", "report.*", "payments.refund.big", "?b.query", "[pc]rm.update"]  # fmt: skip
ACTIONS = ["payments.refund", "payments.refund.big", "db.query", "db.v1.read", "crm.update",
           "prm.update", "kb.search", "report.daily", "x.delete", "zb.query", "", "payments"]  # fmt: skip


def _spec(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)  # noqa: S311 - a seeded test case
    rules = [{"name": f"r{i}", "actions": rng.sample(GLOBS, rng.randint(1, 3)),
              "tier": rng.randint(1, 4)} for i in range(rng.randint(1, 25))]  # fmt: skip
    return {"agents": {"serviceAccounts": ["a"]}, "defaultTier": 3, "rules": rules}


@pytest.mark.parametrize("seed", range(40))
def test_the_index_finds_the_rules_a_scan_finds_in_order(seed: int) -> None:
    policy = compile_policy("ns", "p", _spec(seed))  # type: ignore[arg-type]
    index = RuleIndex(policy.rules)
    for action in ACTIONS:
        expected = [rule for rule in policy.rules if any_match(rule.actions, action)]
        assert list(index.candidates(action)) == expected
        assert list(index.candidates(action)) == expected  # remembered, same answer


def test_the_index_is_kept_per_policy_object() -> None:
    policy = compile_policy("ns", "p", _spec(1))  # type: ignore[arg-type]
    assert rule_index(policy) is rule_index(policy)
    other = compile_policy("ns", "p", _spec(2))  # type: ignore[arg-type]
    assert rule_index(other) is not rule_index(policy)


def test_the_memo_is_bounded() -> None:
    policy = compile_policy("ns", "p", _spec(3))  # type: ignore[arg-type]
    index = RuleIndex(policy.rules)
    for i in range(RuleIndex.MEMO_SIZE + 10):
        index.candidates(f"payments.{i}")
    assert len(index._memo) <= RuleIndex.MEMO_SIZE


def test_conditions_share_one_binding_and_fail_closed_alike() -> None:
    spec = {"agents": {"serviceAccounts": ["a"]}, "defaultTier": 1, "rules": [
        {"name": "big", "actions": ["payments.*"], "when": "parameters.amount > 100", "tier": 4},
        {"name": "eur", "actions": ["payments.*"], "when": "parameters.currency == 'EUR'", "tier": 3},
    ]}  # fmt: skip
    policy = compile_policy("ns", "p", spec)  # type: ignore[arg-type]
    facts = RequestFacts("ns", "a", "payments.refund", parameters={"amount": 5, "currency": "EUR"})
    assert evaluate(policy, facts).rule == "eur"
    missing = RequestFacts("ns", "a", "payments.refund", parameters={"currency": "EUR"})
    verdict = evaluate(policy, missing)
    assert (verdict.tier, verdict.fail_closed) == (4, True)


def test_bindings_and_plain_dicts_agree() -> None:
    expression = compile_expression("size(labels) == 1 && target.startsWith('prod')")
    variables = {"action": "a", "target": "prod:x", "parameters": {}, "agent": "a",
                 "labels": {"env": "prod"}}  # fmt: skip
    bindings = Bindings(variables)
    assert expression.matches(variables) is expression.matches(bindings) is True
    with pytest.raises(ExpressionError):
        compile_expression("parameters.nothing > 1").matches(bindings)


def _decided(name: str, at: str, agent: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": at},
            "spec": {"agent": agent, "action": "db.query", "parameters": {"big": "x" * 100}},
            "status": {"phase": "Approved", "tier": 1, "policy": "p", "rule": "r",
                       "decision": {"outcome": "Approved", "reason": "AutoApproved", "at": at},
                       "reviews": []}}  # fmt: skip


def test_reports_keep_the_newest_decided_requests_per_agent() -> None:
    store = DecidedRequests()
    store.record({"metadata": {"name": "w", "namespace": "ns"}, "spec": {"agent": "a"},
                  "status": {"phase": "AwaitingApproval"}})  # fmt: skip
    assert store.of("ns", "a") == []
    for i in range(1000):
        store.record(_decided(f"r{i:04}", f"2026-01-01T00:{i // 60:02}:{i % 60:02}Z"))
    kept = store.of("ns", "a")
    assert len(kept) <= 800
    assert {b["metadata"]["name"] for b in kept} >= {f"r{i:04}" for i in range(800, 1000)}
    assert "parameters" not in kept[0]["spec"]
    store.forget("ns", "r0999")
    assert "r0999" not in {b["metadata"]["name"] for b in store.of("ns", "a")}
    assert store.of("ns", "b") == []

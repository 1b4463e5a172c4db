from datetime import timedelta
from typing import Any

import pytest
from handoff.domain.policy import DEFAULT_TIER3, DEFAULT_TIER4, compile_policy
from handoff.domain.reasons import Mode, Oversight


def compiled(**spec: Any) -> Any:
    body = {"agents": {"serviceAccounts": ["a"]}, **spec}
    return compile_policy("ns", "p", body)  # type: ignore[arg-type]


def test_defaults() -> None:
    p = compiled()
    assert p.ready
    assert p.mode is Mode.ENFORCE
    assert p.default_tier == 4
    assert p.tier3 == DEFAULT_TIER3
    assert p.tier4 == DEFAULT_TIER4
    assert p.tier3.oversight is Oversight.HOTL
    assert p.tier4.oversight is Oversight.HITL


def test_lanes_compile() -> None:
    p = compiled(
        tiers={
            "tier3": {"oversight": "HITL", "decisionWindow": "1h", "approvals": 2},
            "tier4": {"decisionWindow": "2m", "checklist": [{"id": "x", "text": "X"}]},
        }
    )
    assert p.ready
    assert p.tier3.oversight is Oversight.HITL
    assert p.tier3.hold_for is None
    assert p.tier3.decision_window == timedelta(hours=1)
    assert p.tier4.decision_window == timedelta(minutes=2)
    assert [i.id for i in p.tier4.checklist] == ["x"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"tiers": {"tier4": {"holdFor": "5m"}}}, "always HITL"),
        ({"tiers": {"tier4": {"oversight": "HOTL"}}}, "always HITL"),
        ({"tiers": {"tier4": {"approvals": 0}}}, "at least 1"),
        ({"tiers": {"tier4": {"decisionWindow": "5s"}}}, "outside 10s to 168h"),
        ({"tiers": {"tier4": {"decisionWindow": "8d"}}}, "not a duration"),
        ({"tiers": {"tier3": {"oversight": "HOOTL"}}}, "HOTL or HITL"),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 5}]}, "tier 5"),
        ({"rules": [{"name": "r", "actions": [], "tier": 1}]}, "at least one glob"),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 1, "when": "confidence > 0.5"}]}, "confidence"),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 1}, {"name": "r", "actions": ["y"], "tier": 1}]}, "more than once"),
        ({"rules": [{"name": "r", "actions": ["x"], "tier": 4, "approvals": 0}]}, "at least 1"),
        ({"defaultTier": 0}, "defaultTier"),
        ({"mode": "Yolo"}, "neither Enforce nor Audit"),
        ({"tiers": {"tier4": {"checklist": [{"id": "a", "text": "A"}, {"id": "a", "text": "B"}]}}}, "unique"),
    ],
)  # fmt: skip
def test_problems_make_the_policy_not_ready(spec: dict[str, Any], error: str) -> None:
    p = compiled(**spec)
    assert not p.ready
    assert any(error in e for e in p.errors), p.errors


def test_a_broken_rule_leaves_the_others_and_still_fails_closed() -> None:
    p = compiled(rules=[
        {"name": "ok", "actions": ["db.*"], "tier": 1},
        {"name": "bad", "actions": ["x"], "tier": 1, "when": "parameters.x >"},
    ])  # fmt: skip
    assert [r.name for r in p.rules] == ["ok"]
    assert not p.ready
    assert "rule 'bad'" in p.errors[0]

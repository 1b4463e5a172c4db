"""Shadow, fatigue and calibration reports on a recorded history."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.domain.oversight import calibration, fatigue, reliability_svg, right, shadow
from handoff.domain.timefmt import format_time

START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def decided(
    i: int,
    *,
    by: str = "alice",
    seconds: float = 10,
    outcome: str = "Approved",
    reason: str = "HumanApproved",
    confidence: float | None = None,
    tier: int = 4,
    shadow_tier: int | None = None,
    **status: Any,
) -> dict[str, Any]:
    waiting = START + timedelta(minutes=i)
    body: dict[str, Any] = {
        "metadata": {"name": f"r{i}", "namespace": "agents"},
        "spec": {"agent": "payments-agent", "action": "payments.refund"},
        "status": {
            "tier": tier, "policy": "payments", "deadline": format_time(waiting + timedelta(minutes=15)),
            "conditions": [{"type": "Classified", "lastTransitionTime": format_time(waiting)}],
            "decision": {"outcome": outcome, "reason": reason, "by": [by],
                         "at": format_time(waiting + timedelta(seconds=seconds))},
            **status,
        },
    }  # fmt: skip
    if confidence is not None:
        body["spec"]["confidence"] = confidence
    if shadow_tier is not None:
        body["status"]["shadow"] = [{"policy": "stricter", "tier": shadow_tier}]
    return body


def test_shadow_counts_how_an_audit_policy_would_change_tiers() -> None:
    history = [
        decided(0, tier=2, shadow_tier=4),
        decided(1, tier=4, shadow_tier=4),
        decided(2, tier=4, shadow_tier=1),
    ]
    [line] = shadow(history)
    assert (line.policy, line.evaluated, line.stricter, line.laxer, line.same) == (
        "stricter",
        3,
        1,
        1,
        1,
    )


def test_fatigue_flags_a_reviewer_who_approves_everything_fast() -> None:
    stamper = [decided(i, by="bob", seconds=3) for i in range(6)]
    reader = [
        decided(10 + i, by="alice", seconds=240, outcome="Denied" if i % 3 == 0 else "Approved")
        for i in range(6)
    ]
    reviewers, policies = fatigue(stamper + reader, fast_seconds=30)
    by_name = {r.reviewer: r for r in reviewers}
    assert by_name["bob"].flagged
    assert by_name["bob"].approval_rate == 1.0
    assert by_name["bob"].median_seconds == 3
    assert not by_name["alice"].flagged
    assert by_name["alice"].approval_rate == 4 / 6
    assert by_name["alice"].median_seconds == 240
    assert policies[0].reached_a_human == 1.0


def test_calibration_shows_what_90_percent_was_worth() -> None:
    history = [decided(i, confidence=0.92) for i in range(6)]
    history += [
        decided(10 + i, confidence=0.95, outcome="Denied", reason="HumanDenied") for i in range(2)
    ]
    history += [decided(20, confidence=0.9, phase="RolledBack")]
    history += [
        decided(30, confidence=0.9, outcome="Denied", reason="Expired")
    ]  # nobody looked: left out
    [top] = calibration(history)["payments-agent"]
    assert top.count == 9
    assert round(top.stated, 3) == round((6 * 0.92 + 2 * 0.95 + 0.9) / 9, 3)
    assert top.observed == 6 / 9
    assert right({"decision": {"outcome": "Approved"}, "execution": {"outcome": "Failed"}}) is False
    svg = reliability_svg("payments-agent <x>", [top])
    root = ET.fromstring(svg)  # noqa: S314 - our own SVG, made in this test
    assert root.tag.endswith("svg")
    assert "payments-agent &lt;x&gt;" in svg

"""The chart's alerts, evaluated by Prometheus's own rule code over made-up series (what
`promtool test rules` does): each fires in the situation its runbook describes and stays quiet
in the look-alike situation that needs nobody.

Series use promqltest's notation: `load 5m` then `metric{labels} a+bxn` (start at a, add b, n
steps). Times are offsets from the first sample.
"""

import json
import subprocess
from typing import Any

import pytest
from handoff import paths

from .chart import EVERYTHING_ON, FULLNAME, find, render

pytestmark = pytest.mark.integration

AGENTS = 'namespace="agents"'


@pytest.fixture(scope="module")
def rules() -> dict[str, dict[str, Any]]:
    rule = find(render(*EVERYTHING_ON), "PrometheusRule", f"{FULLNAME}-operator")
    return {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}


def fired(
    rules: dict[str, dict[str, Any]], alert: str, series: str, end: str, interval: str = "1m"
) -> list[dict[str, Any]]:
    """When (offsets) and with which labels ``alert`` fires over ``series``, evaluated every
    ``interval`` from 0 to ``end``."""
    binary = paths.bin_dir() / "promql-check"
    if not binary.exists():
        pytest.fail(f"no {binary}: run 'make promql-check' first")
    rule = rules[alert]
    document = {
        "series": series,
        "interval": interval,
        "end": end,
        "rules": [{"alert": alert, "expr": rule["expr"], "for": rule.get("for", "")}],
    }
    result = subprocess.run(
        [str(binary), "eval"],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)
    assert outcome["error"] == "", outcome["error"]
    return list(outcome["firing"])


def at(firing: list[dict[str, Any]], offset: str) -> list[dict[str, str]]:
    return [f["labels"] for f in firing if f["at"] == offset]


def decided(reason: str, tier: int, values: str, namespace: str = "agents") -> str:
    outcome = "Approved" if reason in ("HumanApproved", "AutoApproved", "NotVetoed") else "Denied"
    return (
        f'handoff_action_requests_total{{namespace="{namespace}",policy="payments",tier="{tier}",'
        f'outcome="{outcome}",reason="{reason}"}} {values}'
    )


def test_requests_near_their_deadline_with_no_reviewer(rules: dict[str, dict[str, Any]]) -> None:
    """Two requests wait in agents from minute 2 and nobody decides; in billing one waits as long
    but reviewers keep deciding there."""
    series = "\n".join([
        "load 1m",
        f"  handoff_pending_requests{{{AGENTS},tier=\"4\"}} 0 0 2x40",
        "  handoff_pending_requests{namespace=\"billing\",tier=\"3\"} 0 0 1x40",
        f"  {decided('HumanApproved', 4, '0x42')}",
        f"  {decided('HumanApproved', 3, '0+1x42', namespace='billing')}",
    ])  # fmt: skip
    firing = fired(rules, "HandoffRequestsNearDeadlineUnreviewed", series, "30m")
    assert at(firing, "5m0s") == []  # waiting 3 minutes is normal
    assert at(firing, "20m0s") == [
        {"alertname": "HandoffRequestsNearDeadlineUnreviewed", "namespace": "agents"}
    ]
    assert not [f for f in firing if f["labels"]["namespace"] == "billing"]
    first = min(int(f["at"].removesuffix("m0s")) for f in firing)
    assert 11 <= first <= 13, firing[0]  # after the 10-minute window (and the rule's `for`)


def test_a_reviewer_deciding_clears_it(rules: dict[str, dict[str, Any]]) -> None:
    series = "\n".join([
        "load 1m",
        f"  handoff_pending_requests{{{AGENTS},tier=\"4\"}} 1x40",
        f"  {decided('HumanDenied', 4, '0x19 1x21')}",  # one decision at minute 20
    ])  # fmt: skip
    firing = fired(rules, "HandoffRequestsNearDeadlineUnreviewed", series, "40m")
    assert at(firing, "15m0s")
    assert at(firing, "25m0s") == []  # someone is deciding
    assert at(firing, "35m0s")  # and then nobody again


def test_expiries_rising_above_the_days_average(rules: dict[str, dict[str, Any]]) -> None:
    """A day with an expiry an hour among twelve approvals an hour, then two hours of one expiry
    every 5 minutes."""
    day = 288  # 5-minute steps
    series = "\n".join([
        "load 5m",
        f"  {decided('HumanApproved', 4, f'0+1x{day + 24}')}",
        f"  {decided('Expired', 4, f'0+0.0833x{day} 24+1x24')}",
    ])  # fmt: skip
    firing = fired(rules, "HandoffExpiryRateRising", series, "26h", interval="5m")
    assert at(firing, "23h0m0s") == []  # 8% of decisions: a quiet day
    assert at(firing, "25h30m0s") == [
        {"alertname": "HandoffExpiryRateRising", "namespace": "agents"}
    ]


def test_expiries_where_there_were_none(rules: dict[str, dict[str, Any]]) -> None:
    """The Expired series appears only with the first expiry: from none to many is rising."""
    series = "\n".join([
        "load 5m",
        f"  {decided('HumanApproved', 4, '0+1x72')}",
        f"  {decided('Expired', 4, '_x48 1+1x24')}",  # from 4h on
    ])  # fmt: skip
    firing = fired(rules, "HandoffExpiryRateRising", series, "6h", interval="5m")
    assert at(firing, "3h0m0s") == []
    assert at(firing, "5h30m0s") == [
        {"alertname": "HandoffExpiryRateRising", "namespace": "agents"}
    ]


def test_a_steady_expiry_share_is_not_rising(rules: dict[str, dict[str, Any]]) -> None:
    """A third of decisions expire, all day long: worth a look, but this alert is about change."""
    steps = 312
    series = "\n".join([
        "load 5m",
        f"  {decided('HumanApproved', 4, f'0+2x{steps}')}",
        f"  {decided('Expired', 4, f'0+1x{steps}')}",
    ])  # fmt: skip
    assert fired(rules, "HandoffExpiryRateRising", series, "26h", interval="5m") == []


@pytest.mark.parametrize(("failed_per_step", "fires"), [(1, True), (0.01, False)])
def test_notifications_failing(
    rules: dict[str, dict[str, Any]], failed_per_step: float, fires: bool
) -> None:
    labels = f'{AGENTS},policy="payments",target="slack"'
    series = "\n".join([
        "load 1m",
        f"  handoff_notifications_total{{{labels},result=\"delivered\"}} 0+1x60",
        f"  handoff_notifications_total{{{labels},result=\"failed\"}} 0+{failed_per_step}x60",
    ])  # fmt: skip
    firing = at(fired(rules, "HandoffNotificationsFailing", series, "60m"), "1h0m0s")
    expected = [{"alertname": "HandoffNotificationsFailing", "namespace": "agents", "policy": "payments", "target": "slack"}]  # fmt: skip
    assert firing == (expected if fires else [])


@pytest.mark.parametrize(("fast_per_step", "fires"), [(1, True), (0.2, False)])
def test_fast_approvals(
    rules: dict[str, dict[str, Any]], fast_per_step: float, fires: bool
) -> None:
    """Two human approvals every 5 minutes; half of them, or a tenth, faster than allowed."""
    series = "\n".join([
        "load 5m",
        f"  {decided('HumanApproved', 4, '0+2x48')}",
        f"  handoff_fast_approvals_total{{{AGENTS}}} 0+{fast_per_step}x48",
    ])  # fmt: skip
    firing = at(fired(rules, "HandoffFastApprovalRateHigh", series, "4h", interval="5m"), "4h0m0s")
    assert firing == ([{"alertname": "HandoffFastApprovalRateHigh", "namespace": "agents"}] if fires else [])  # fmt: skip


@pytest.mark.parametrize(
    ("series", "fires"),
    [
        ('handoff_leader{pod="a"} 1x30\n  handoff_leader{pod="b"} 0x30', False),
        ('handoff_leader{pod="a"} 0x30\n  handoff_leader{pod="b"} 0x30', True),
        ('handoff_leader{pod="a"} 1x5 _x25', True),  # scraped no more
    ],
)
def test_no_leader(rules: dict[str, dict[str, Any]], series: str, fires: bool) -> None:
    firing = at(fired(rules, "HandoffNoLeader", f"load 1m\n  {series}", "30m"), "30m0s")
    assert bool(firing) == fires

"""The oversight numbers, table by table on a fixed history: the rubber-stamp flag at each of its
boundaries, the fast share, the per-hour rate, shadow counts and calibration bins."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from handoff.domain.oversight import (
    CalibrationBin,
    ShadowLine,
    calibration,
    fatigue,
    reliability_svg,
    right,
    shadow,
)
from handoff.domain.timefmt import format_time

START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def decision(
    minute: float, seconds: float, *, by: Any = ("bob",), outcome: str = "Approved", **status: Any
) -> dict[str, Any]:
    """A request classified at START + minute, decided ``seconds`` later by ``by``."""
    waiting = START + timedelta(minutes=minute)
    return {"status": {
        "policy": "payments", "deadline": "d",
        "conditions": [{"type": "Classified", "lastTransitionTime": format_time(waiting)}],
        "decision": {"outcome": outcome, "by": list(by),
                     "at": format_time(waiting + timedelta(seconds=seconds))},
    } | status}  # fmt: skip


def history(seconds: list[float], approved: int | None = None, every: float = 1) -> list[Any]:
    """One reviewer's decisions, ``every`` minutes apart; the first ``approved`` are approvals."""
    approved = len(seconds) if approved is None else approved
    return [
        decision(i * every, s, outcome="Approved" if i < approved else "Denied")
        for i, s in enumerate(seconds)
    ]


# (history, fast_seconds) -> (decided, approval rate, median seconds, fast share, per hour, flagged)
@pytest.mark.parametrize(
    ("requests", "fast_seconds", "expected"),
    [
        # the flag needs five decisions...
        (history([3] * 5), 30, (5, 1.0, 3, 1.0, 5.0, True)),
        (history([3] * 4), 30, (4, 1.0, 3, 1.0, 4.0, False)),
        # ...an approval rate of 95 % or more...
        (history([3] * 20, approved=19), 30, (20, 0.95, 3, 1.0, 20.0, True)),
        (history([3] * 19, approved=18), 30, (19, 18 / 19, 3, 1.0, 19.0, False)),
        # ...and half or more of them decided faster than fast_seconds
        (history([3, 3, 3, 60, 60, 60]), 30, (6, 1.0, 31.5, 0.5, 6.0, True)),
        (history([3, 3, 60, 60, 60, 60]), 30, (6, 1.0, 60, 2 / 6, 6.0, False)),
        # exactly fast_seconds is not fast; the threshold is the caller's
        (history([30] * 5), 30, (5, 1.0, 30, 0.0, 5.0, False)),
        (history([30] * 5), 31, (5, 1.0, 30, 1.0, 5.0, True)),
        (history([30] * 5), 30.0001, (5, 1.0, 30, 1.0, 5.0, True)),
        # per hour: decisions over the span from first to last, never less than one hour
        (history([3] * 8, every=30), 30, (8, 1.0, 3, 1.0, 8 / 3.5, True)),
        (history([3] * 3, every=60), 30, (3, 1.0, 3, 1.0, 1.5, False)),
        (history([3] * 2, every=59), 30, (2, 1.0, 3, 1.0, 2.0, False)),
        (history([3]), 30, (1, 1.0, 3, 1.0, 1.0, False)),
        # a denial is a decision too, and the median is the middle one
        (history([1, 2, 100], approved=1), 30, (3, 1 / 3, 2, 2 / 3, 3.0, False)),
    ],
)  # fmt: skip
def test_fatigue_per_reviewer(
    requests: list[Any], fast_seconds: float, expected: tuple[Any, ...]
) -> None:
    [line], _ = fatigue(requests, fast_seconds=fast_seconds)
    assert line.reviewer == "bob"
    got = (line.decided, line.approval_rate, line.median_seconds, line.fast_share,
           line.per_hour, line.flagged)  # fmt: skip
    assert got == pytest.approx(expected)


def test_fatigue_counts_from_the_time_it_was_classified_and_skips_what_nobody_decided() -> None:
    classified_late = decision(0, 10)
    classified_late["status"]["conditions"] = [
        {"type": "Decided", "lastTransitionTime": format_time(START - timedelta(hours=1))},
        {"type": "Classified"},  # no time: not this one
        {"type": "Classified", "lastTransitionTime": format_time(START)},
    ]
    requests = [
        classified_late,
        decision(1, 5, by=[]),  # tier 1: no reviewer
        decision(2, 5) | {"status": {"policy": "payments", "decision": {"by": ["bob"], "at": "x"}}},
        {"status": {"policy": "other", "decision": {"by": ["bob"]},
                    "conditions": [{"type": "Classified", "lastTransitionTime": "2026-11-29T09:00:00Z"}]}},
        {"status": None},
        decision(3, 5, by=["alice", "bob"], deadline=None, outcome="Denied"),
    ]  # fmt: skip
    reviewers, policies = fatigue(requests, fast_seconds=6)
    lines = {
        r.reviewer: (r.decided, r.approval_rate, r.median_seconds, r.fast_share) for r in reviewers
    }
    assert lines == {"alice": (1, 0.0, 5, 1.0), "bob": (2, 0.5, 7.5, 0.5)}
    assert [(p.policy, p.requests, p.reached_a_human) for p in policies] == [
        ("other", 1, 0.0),
        ("payments", 4, 0.5),
    ]


def test_fatigue_default_fast_threshold_is_30_seconds() -> None:
    [line], _ = fatigue(history([29, 29, 29, 30, 30, 30]))
    assert line.fast_share == 0.5


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([(2, 4)], (1, 1, 0, 0)),
        ([(4, 2)], (1, 0, 1, 0)),
        ([(3, 3)], (1, 0, 0, 1)),
        ([(None, 3)], (1, 0, 0, 1)),
        ([(3, None)], (1, 0, 0, 1)),
        ([(1, 2), (1, 3), (4, 1), (2, 2)], (4, 2, 1, 1)),
        ([(1, 2), (1, 2), (4, 1), (4, 2), (2, 2), (2, 2)], (6, 2, 2, 2)),
        ([(None, 2), (2, None), (None, None)], (3, 0, 0, 3)),
    ],
)
def test_shadow_counts(entries: list[tuple[Any, Any]], expected: tuple[int, ...]) -> None:
    requests = [
        {"status": {"tier": t, "shadow": [{"policy": "audit", "tier": s}]}} for t, s in entries
    ]
    assert shadow(requests) == [ShadowLine("audit", *expected)]


def test_shadow_lines_are_per_policy_in_name_order() -> None:
    requests = [
        {"status": {"tier": 2, "shadow": [{"policy": "zeta", "tier": 4}, {"policy": "alpha", "tier": 1}]}},
        {"status": {"tier": 2, "shadow": [{"tier": 2}]}},
        {"status": {"tier": 2}},
        {"status": None},
    ]  # fmt: skip
    assert shadow(requests) == [
        ShadowLine("None", 1, 0, 0, 1),
        ShadowLine("alpha", 1, 0, 1, 0),
        ShadowLine("zeta", 1, 1, 0, 0),
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, None),
        ({"decision": {}}, None),
        ({"decision": {"outcome": "Denied", "reason": "Expired"}}, None),
        ({"decision": {"outcome": "Approved", "reason": "Expired"}}, None),
        ({"decision": {"outcome": "Approved"}}, True),
        ({"decision": {"outcome": "Approved"}, "phase": "Executed"}, True),
        ({"decision": {"outcome": "Approved"}, "execution": {"outcome": "Executed"}}, True),
        ({"decision": {"outcome": "Approved"}, "execution": None}, True),
        ({"decision": {"outcome": "Approved"}, "phase": "RolledBack"}, False),
        ({"decision": {"outcome": "Approved"}, "execution": {"outcome": "Failed"}}, False),
        ({"decision": {"outcome": "Denied", "reason": "HumanDenied"}}, False),
    ],
)  # fmt: skip
def test_what_counts_as_right(status: dict[str, Any], expected: bool | None) -> None:
    assert right(status) is expected


def stated(agent: str, confidence: float | None, approved: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"agent": agent}
    if confidence is not None:
        spec["confidence"] = confidence
    outcome = "Approved" if approved else "Denied"
    return {"spec": spec, "status": {"decision": {"outcome": outcome}}}


@pytest.mark.parametrize(
    ("confidences", "bins"),
    [
        ([0.0, 0.49], [(0.0, 0.5, 2)]),
        ([0.5, 0.69], [(0.5, 0.7, 2)]),
        ([0.7, 0.79], [(0.7, 0.8, 2)]),
        ([0.8, 0.89], [(0.8, 0.9, 2)]),
        ([0.9, 1.0], [(0.9, 1.0, 2)]),
        ([0.1, 0.95, 0.6], [(0.0, 0.5, 1), (0.5, 0.7, 1), (0.9, 1.0, 1)]),
        ([1.5, -0.1], []),
    ],
)
def test_calibration_bins(confidences: list[float], bins: list[tuple[float, float, int]]) -> None:
    result = calibration([stated("a", c) for c in confidences])
    assert [(b.low, b.high, b.count) for b in result["a"]] == bins


def test_calibration_states_means_and_shares_per_agent() -> None:
    requests = [
        stated("a", None), {"spec": {"agent": "a", "confidence": 0.9}, "status": {}},
        {"spec": None, "status": None},  # the skipped ones first: the rest still counts
        stated("b", 0.6), stated("b", 0.65, approved=False), stated("b", 0.55, approved=False),
        stated("a", 0.95),
    ]  # fmt: skip
    result = calibration(requests)
    assert list(result) == ["a", "b"]
    assert result["a"] == [CalibrationBin(0.9, 1.0, 1, 0.95, 1.0)]
    [line] = result["b"]
    assert (line.low, line.high, line.count) == (0.5, 0.7, 3)
    assert line.stated == pytest.approx(0.6)
    assert line.observed == pytest.approx(1 / 3)


def test_the_reliability_plot_whole() -> None:
    bins = [CalibrationBin(0.5, 0.7, 4, 0.6, 0.25), CalibrationBin(0.9, 1.0, 80, 0.95, 1.0)]
    assert reliability_svg("a&<b>", bins, size=200) == (
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200" viewBox="0 0 200 200"'
        ' font-family="sans-serif"><rect width="200" height="200" fill="#fff"/>'
        '<text x="100.0" y="20" font-size="13" text-anchor="middle">'
        "a&amp;&lt;b&gt;: stated confidence vs. share right</text>"
        '<line x1="40.0" y1="160.0" x2="160.0" y2="40.0" stroke="#aaa" stroke-dasharray="4 4"/>'
        '<rect x="40" y="40" width="120" height="120" fill="none" stroke="#333"/>'
        '<polyline points="112.0,130.0 154.0,40.0" fill="none" stroke="#1f5fbf" stroke-width="2"/>'
        '<circle cx="112.0" cy="130.0" r="3.4" fill="#1f5fbf">'
        "<title>4 requests: stated 0.60, right 0.25</title></circle>"
        '<circle cx="154.0" cy="40.0" r="8.0" fill="#1f5fbf">'
        "<title>80 requests: stated 0.95, right 1.00</title></circle>"
        '<text x="40.0" y="176" font-size="11" text-anchor="middle">0.0</text>'
        '<text x="32" y="160.0" font-size="11" text-anchor="end">0.0</text>'
        '<text x="100.0" y="176" font-size="11" text-anchor="middle">0.5</text>'
        '<text x="32" y="100.0" font-size="11" text-anchor="end">0.5</text>'
        '<text x="160.0" y="176" font-size="11" text-anchor="middle">1.0</text>'
        '<text x="32" y="40.0" font-size="11" text-anchor="end">1.0</text></svg>'
    )
    assert 'width="360" height="360"' in reliability_svg("x", [])


def test_fatigue_counts_approvals_by_grant_per_reviewer_apart_from_their_decisions() -> None:
    by_grant = {"reason": "GrantApproved"}
    requests = [
        *history([60] * 2),  # bob reads two himself
        *[decision(i, 0, by=["bob", "actiongrant/g"], outcome="Approved") for i in range(9)],
        decision(1, 0, by=["carol", "actiongrant/h"]),
        decision(2, 0, by=[]),
    ]
    for body in requests[2:]:
        body["status"]["decision"] |= by_grant
    reviewers, _ = fatigue(requests)
    lines = {r.reviewer: (r.decided, r.approval_rate, r.fast_share, r.flagged, r.by_grant)
             for r in reviewers}  # fmt: skip
    # Instant grant approvals neither make bob a rubber stamp nor list the grant as a reviewer.
    assert lines == {"bob": (2, 1.0, 0.0, False, 9), "carol": (0, 0.0, 0.0, False, 1)}
    carol = next(r for r in reviewers if r.reviewer == "carol")
    assert (carol.median_seconds, carol.per_hour) == (0.0, 0.0)


def test_fatigue_lists_every_reviewer_after_one_who_only_granted() -> None:
    granted = decision(0, 0, by=["alice", "actiongrant/g"])
    granted["status"]["decision"]["reason"] = "GrantApproved"
    reviewers, _ = fatigue([granted, *history([3] * 2)])
    assert [(r.reviewer, r.decided, r.by_grant) for r in reviewers] == [
        ("alice", 0, 1),
        ("bob", 2, 0),
    ]

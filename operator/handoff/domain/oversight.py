"""The numbers that keep oversight honest, from a history of requests. Pure.

- shadow: how an Audit-mode policy would have changed decisions, before anyone enforces it;
- fatigue: whether reviewers read or rubber-stamp (volume, speed, approval rate);
- calibration: what an agent's stated confidence was worth (the article's "90% sure").
"""

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from handoff.domain.reasons import Outcome, Phase, Reason
from handoff.domain.timefmt import parse_time

Body = Mapping[str, Any]
BINS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001))


@dataclass(frozen=True)
class ShadowLine:
    policy: str
    evaluated: int
    stricter: int  # requests the Audit policy would have put in a higher tier
    laxer: int
    same: int


def shadow(requests: Iterable[Body]) -> list[ShadowLine]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for body in requests:
        status = body.get("status") or {}
        actual = status.get("tier")
        for entry in status.get("shadow") or []:
            row = counts[str(entry.get("policy"))]
            row[0] += 1
            if actual is None or entry.get("tier") is None:
                row[3] += 1
            elif entry["tier"] > actual:
                row[1] += 1
            elif entry["tier"] < actual:
                row[2] += 1
            else:
                row[3] += 1
    return [ShadowLine(policy, *row) for policy, row in sorted(counts.items())]


@dataclass(frozen=True)
class ReviewerLine:
    reviewer: str
    decided: int
    approval_rate: float
    median_seconds: float
    fast_share: float  # decided sooner than the fast threshold
    per_hour: float
    flagged: bool  # approves nearly everything, quickly
    by_grant: int = 0  # requests approved in advance by this reviewer's grants (GrantApproved)


@dataclass(frozen=True)
class PolicyLine:
    policy: str
    requests: int
    reached_a_human: float


def _waiting_since(status: Mapping[str, Any]) -> Any:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Classified" and condition.get("lastTransitionTime"):
            return parse_time(condition["lastTransitionTime"])
    return None


def fatigue(
    requests: Iterable[Body], fast_seconds: float = 30.0
) -> tuple[list[ReviewerLine], list[PolicyLine]]:
    decided: dict[str, list[tuple[bool, float, Any]]] = defaultdict(list)
    per_policy: dict[str, list[bool]] = defaultdict(list)
    granted: dict[str, int] = defaultdict(int)
    for body in requests:
        status = body.get("status") or {}
        if status.get("policy"):
            per_policy[str(status["policy"])].append(bool(status.get("deadline")))
        decision = status.get("decision") or {}
        if decision.get("reason") == Reason.GRANT_APPROVED and decision.get("by"):
            granted[str(decision["by"][0])] += 1  # its author; not a decision read by a person
            continue
        since = _waiting_since(status)
        if not decision.get("by") or since is None or not decision.get("at"):
            continue
        at = parse_time(decision["at"])
        for reviewer in decision["by"]:
            decided[reviewer].append(
                (decision.get("outcome") == Outcome.APPROVED, (at - since).total_seconds(), at)
            )
    reviewers = []
    for reviewer in sorted(set(decided) | set(granted)):
        rows = decided.get(reviewer) or []
        if not rows:
            reviewers.append(
                ReviewerLine(reviewer, 0, 0.0, 0.0, 0.0, 0.0, False, granted[reviewer])
            )
            continue
        approvals = sum(1 for approved, _, _ in rows if approved)
        seconds = [s for _, s, _ in rows]
        times = sorted(at for _, _, at in rows)
        span_hours = max((times[-1] - times[0]).total_seconds() / 3600, 1.0)
        fast = sum(1 for s in seconds if s < fast_seconds) / len(rows)
        rate = approvals / len(rows)
        reviewers.append(ReviewerLine(
            reviewer, len(rows), rate, statistics.median(seconds), fast, len(rows) / span_hours,
            flagged=len(rows) >= 5 and rate >= 0.95 and fast >= 0.5, by_grant=granted[reviewer],
        ))  # fmt: skip
    policies = [PolicyLine(p, len(v), sum(v) / len(v)) for p, v in sorted(per_policy.items())]
    return reviewers, policies


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    stated: float  # mean confidence the agent claimed
    observed: float  # share that turned out right: approved, carried out, not rolled back


def right(status: Mapping[str, Any]) -> bool | None:
    decision = status.get("decision") or {}
    if not decision:
        return None
    if decision.get("reason") == Reason.EXPIRED:
        return None  # nobody looked: says nothing about the agent
    return (
        decision.get("outcome") == Outcome.APPROVED
        and status.get("phase") != Phase.ROLLED_BACK
        and (status.get("execution") or {}).get("outcome") != Phase.FAILED
    )


def calibration(requests: Iterable[Body]) -> dict[str, list[CalibrationBin]]:
    points: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for body in requests:
        confidence = (body.get("spec") or {}).get("confidence")
        verdict = right(body.get("status") or {})
        if confidence is None or verdict is None:
            continue
        points[str(body["spec"].get("agent"))].append((float(confidence), verdict))
    result = {}
    for agent, rows in sorted(points.items()):
        bins = []
        for low, high in BINS:
            inside = [(c, ok) for c, ok in rows if low <= c < high]
            if inside:
                stated = statistics.mean(c for c, _ in inside)
                observed = sum(1 for _, ok in inside if ok) / len(inside)
                bins.append(CalibrationBin(low, min(high, 1.0), len(inside), stated, observed))
        result[agent] = bins
    return result


def reliability_svg(agent: str, bins: list[CalibrationBin], size: int = 360) -> str:
    """A reliability plot: stated confidence across, share right up; the diagonal is honest."""
    pad = 40
    inner = size - 2 * pad

    def x(v: float) -> str:
        return f"{pad + v * inner:.1f}"

    def y(v: float) -> str:
        return f"{size - pad - v * inner:.1f}"

    points = " ".join(f"{x(b.stated)},{y(b.observed)}" for b in bins)
    dots = []
    for b in bins:
        label = f"{b.count} requests: stated {b.stated:.2f}, right {b.observed:.2f}"
        radius = 3 + min(b.count, 50) / 10
        dots.append(
            f'<circle cx="{x(b.stated)}" cy="{y(b.observed)}" r="{radius:.1f}" fill="#1f5fbf">'
            f"<title>{label}</title></circle>"
        )
    ticks = []
    for t in (0.0, 0.5, 1.0):
        below = size - pad + 16
        ticks.append(f'<text x="{x(t)}" y="{below}" font-size="11" text-anchor="middle">{t}</text>')
        ticks.append(f'<text x="{pad - 8}" y="{y(t)}" font-size="11" text-anchor="end">{t}</text>')
    title = agent.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}"'
        f' viewBox="0 0 {size} {size}" font-family="sans-serif">',
        f'<rect width="{size}" height="{size}" fill="#fff"/>',
        f'<text x="{size / 2}" y="20" font-size="13" text-anchor="middle">'
        f"{title}: stated confidence vs. share right</text>",
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}"'
        ' stroke="#aaa" stroke-dasharray="4 4"/>',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#333"/>',
        f'<polyline points="{points}" fill="none" stroke="#1f5fbf" stroke-width="2"/>',
        *dots,
        *ticks,
        "</svg>",
    ]
    return "".join(parts)

"""The handoff package as a reviewer reads it: plain words, built from a request. Pure.

Every string an agent (or a reviewer) wrote is passed through ``untrusted.visible``: control and
bidi characters arrive as visible escapes, so neither the console nor the terminal can be made
to reorder or redraw them. Newlines are kept; ``untrusted.block`` quotes them on a terminal.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handoff.domain.reasons import Phase
from handoff.domain.timefmt import parse_time
from handoff.review.untrusted import visible, visible_json

VERBS = {"Approve": "approved", "Deny": "denied", "Rollback": "asked to roll back"}


@dataclass(frozen=True)
class ReviewView:
    reviewer: str
    decision: str
    acknowledged: tuple[str, ...]
    comment: str
    break_glass: bool = False
    stage: str = ""  # a staged request's review: the stage it was for

    @property
    def verb(self) -> str:
        """What the reviewer did, as a past-tense phrase: ``approved``, ``denied``, ``asked to
        roll back`` (a Rollback is neither an approval nor a denial)."""
        done = VERBS.get(self.decision, f"reviewed ({self.decision})")
        if self.stage:
            done += f" at stage {self.stage}"
        return f"{done} under break-glass" if self.break_glass else done


@dataclass(frozen=True)
class StageView:
    """One approval stage of a staged request, as reviewers read it."""

    name: str
    approvals: int
    reviewers: str  # "alice, group:finance"
    approved_by: tuple[str, ...]
    open: bool

    @property
    def line(self) -> str:
        """One line: the stage, who approved it, and what it still needs."""
        done = f"approved by {', '.join(self.approved_by)}" if self.approved_by else ""
        if len(self.approved_by) >= self.approvals:
            state = done
        else:
            needed = self.approvals - len(self.approved_by)
            when = "open: " if self.open else "then: "
            state = f"{when}needs {needed} more from {self.reviewers}"
            state += f"; {done}" if done else ""
        return f"{self.name}: {state}"


@dataclass(frozen=True)
class Package:
    namespace: str
    name: str
    uid: str
    agent: str
    action: str
    target: str
    summary: str
    reasoning: str
    blast_radius: str
    rollback: str
    parameters: str  # pretty JSON
    confidence: float | None
    tier: int | None
    oversight: str
    phase: str
    policy: str
    rule: str | None
    why_matched: str
    deadline: datetime | None
    required_approvals: int
    checklist: tuple[tuple[str, str], ...]
    reviews: tuple[ReviewView, ...]
    decision: Mapping[str, Any] | None
    progress: str  # the Decided condition's message: where the reviews stand
    requested_by: str
    created: datetime | None
    min_review_seconds: int = 0
    execution: Mapping[str, Any] | None = None
    reversible: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    stage: str = ""  # the open approval stage ("" without stages)
    stages: tuple[StageView, ...] = ()

    @property
    def open_stage(self) -> StageView | None:
        return next((s for s in self.stages if s.name == self.stage), None)

    @property
    def decided(self) -> bool:
        return bool(self.decision)

    @property
    def waiting(self) -> bool:
        return not self.decided and self.deadline is not None

    def approvals(self) -> int:
        """Approvals so far: of the open stage, for a staged request."""
        if self.open_stage is not None:
            return len(self.open_stage.approved_by)
        return sum(1 for r in self.reviews if r.decision == "Approve")

    def seconds_left(self, now: datetime) -> float | None:
        if self.deadline is None or self.decided:
            return None
        return (self.deadline - now).total_seconds()


def build(body: Mapping[str, Any]) -> Package:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    rollback = spec.get("rollback") or {}
    rollback_text = str(rollback.get("description", ""))
    if rollback.get("action"):
        rollback_text += f" (as {rollback['action']})"
    return Package(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        agent=visible(spec.get("agent", "")),
        action=visible(spec.get("action", "")),
        target=visible(spec.get("target", "")),
        summary=visible(spec.get("summary", "")),
        reasoning=visible(spec.get("reasoning", "")),
        blast_radius=visible(spec.get("blastRadius", "")),
        rollback=visible(rollback_text),
        parameters=visible_json(parameters_text(spec.get("parameters") or {})),
        confidence=spec.get("confidence"),
        tier=status.get("tier"),
        oversight=str(status.get("oversight", "")),
        phase=str(status.get("phase", Phase.PENDING)),
        policy=str(status.get("policy") or ""),
        rule=status.get("rule"),
        why_matched=visible((conditions.get("Classified") or {}).get("message", "")),
        deadline=parse_time(status["deadline"]) if status.get("deadline") else None,
        required_approvals=int(status.get("requiredApprovals") or 0),
        checklist=tuple((c["id"], c["text"]) for c in status.get("checklist") or []),
        reviews=tuple(_review(r) for r in status.get("reviews") or []),
        decision=_shown(status.get("decision")),
        progress=visible((conditions.get("Decided") or {}).get("message", "")),
        requested_by=str((meta.get("annotations") or {}).get("handoff.dev/requested-by", "")),
        created=parse_time(meta["creationTimestamp"]) if meta.get("creationTimestamp") else None,
        min_review_seconds=int(status.get("minReviewSeconds") or 0),
        execution=_shown(status.get("execution")),
        reversible=bool(spec.get("rollback")),
        stage=visible(status.get("stage") or ""),
        stages=_stages(status),
    )


def _stages(status: Mapping[str, Any]) -> tuple[StageView, ...]:
    views = []
    for raw in status.get("stages") or ():
        reviewers = raw.get("reviewers") or {}
        groups = [f"group:{g}" for g in reviewers.get("groups") or ()]
        who = [*(reviewers.get("users") or ()), *groups]
        views.append(StageView(
            name=visible(raw.get("name", "")),
            approvals=int(raw.get("approvals") or 1),
            reviewers=visible(", ".join(who)) or "nobody",
            approved_by=tuple(visible(a) for a in raw.get("approvedBy") or ()),
            open=raw.get("name") == status.get("stage") and not status.get("decision"),
        ))  # fmt: skip
    return tuple(views)


def _shown(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A status part with its strings made visible (an execution's message is the agent's)."""
    if not value:
        return value
    return {k: visible(v) if isinstance(v, str) else v for k, v in value.items()}


#: Deeper than this, parameters are shown compact: indentation grows with the square of the
#: depth (parameters nested 10,000 deep, which the API server accepts, would take 200 MB).
PRETTY_DEPTH = 32


def parameters_text(parameters: Any) -> str:
    """The parameters as a person reads them: indented JSON, or compact when nested deep."""
    stack: list[tuple[Any, int]] = [(parameters, 0)]
    deep = False
    while stack and not deep:
        value, depth = stack.pop()
        deep = depth > PRETTY_DEPTH
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return json.dumps(parameters, indent=None if deep else 2, sort_keys=True, ensure_ascii=False)


def _review(raw: Mapping[str, Any]) -> ReviewView:
    return ReviewView(
        reviewer=visible(raw.get("reviewer", "")),
        decision=str(raw.get("decision", "")),
        acknowledged=tuple(visible(a) for a in raw.get("acknowledged") or ()),
        comment=visible(raw.get("comment", "")),
        break_glass=bool(raw.get("breakGlass")),
        stage=visible(raw.get("stage", "")),
    )


def time_left(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "expired"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m left"
    if minutes:
        return f"{minutes}m{secs:02d}s left"
    return f"{secs}s left"


def sentence(package: Package) -> str:
    """One line: who proposes what, on what."""
    on = f" on {package.target}" if package.target else ""
    return f"{package.agent} proposes {package.action}{on}: {package.summary}"

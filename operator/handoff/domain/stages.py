"""Approval stages: a HITL lane that passes through several functions in order (a manager, then
finance). Pure, like ``reviews.py``, whose place it takes for a request whose status carries
``stages``.

A request snapshots its lane's stages in its status when it starts waiting (``snapshot``), as it
does its checklist. Which reviews count is then read from the reviews alone, in the order they
were appended (``walk``): the first stage is open; a stage opens only once the one before it has
its approvals; an Approve counts only for the open stage it names, once per person, and one
person counts in one stage only; a Deny at a stage that has opened decides. ``judge`` turns that
and the one deadline of the whole request into a decision; ``status_json`` says what the status
shows (the open stage, who approved each stage) and ``progress`` what is still needed.

Who may review a stage is the cluster's to say, as for the lane without stages: the verb
``approve`` on ``agentactionpolicies/<policy>:<stage>`` (``approve_name``), checked by the
admission policy, which also refuses a review for a stage that is not open.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from handoff.domain.durations import format_duration, parse_duration
from handoff.domain.model import Decision, Review
from handoff.domain.policy import Lane
from handoff.domain.policyparts import ChecklistItem
from handoff.domain.reasons import Outcome, Reason, ReviewDecision
from handoff.domain.timefmt import format_time, parse_time


def approve_name(policy: str, stage: str) -> str:
    """The resource name whose verb ``approve`` is the right to approve ``stage`` (a colon can
    be in no object's name, so it never names a real policy)."""
    return f"{policy}:{stage}"


@dataclass(frozen=True)
class StageState:
    """One stage as a waiting request's status carries it."""

    name: str
    approvals: int
    checklist: tuple[ChecklistItem, ...]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()
    opened_at: datetime | None = None

    def admits(self, review: Review) -> bool:
        """Whether ``review`` comes from a reviewer of this stage as far as the operator can
        tell: a listed user, or anyone when the stage names groups (admission vouched for them,
        on the stage's verb), or under break-glass (vouched for on the verb break-glass)."""
        return review.reviewer in self.users or bool(self.groups) or review.break_glass

    def to_json(self, approved_by: Sequence[str]) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "approvals": self.approvals,
            "reviewers": {"users": sorted(self.users), "groups": sorted(self.groups)},
            "checklist": [item.to_json() for item in self.checklist],
            "approvedBy": list(approved_by),
        }
        if self.escalate_after is not None:
            status["escalateAfter"] = format_duration(self.escalate_after)
            status["escalateTo"] = list(self.escalate_to)
        if self.opened_at is not None:
            status["openedAt"] = format_time(self.opened_at)
        return status

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "StageState":
        reviewers = raw.get("reviewers") or {}
        after = raw.get("escalateAfter")
        opened = raw.get("openedAt")
        return cls(
            name=str(raw.get("name", "")),
            approvals=int(raw.get("approvals") or 1),
            checklist=tuple(ChecklistItem(c["id"], c["text"]) for c in raw.get("checklist") or ()),
            users=frozenset(reviewers.get("users") or ()),
            groups=frozenset(reviewers.get("groups") or ()),
            escalate_after=parse_duration(after) if after else None,
            escalate_to=tuple(raw.get("escalateTo") or ()),
            opened_at=parse_time(opened) if opened else None,
        )


def snapshot(lane: Lane, opened_at: datetime) -> tuple[StageState, ...]:
    """The lane's stages as a request starting to wait at ``opened_at`` carries them: a stage
    without a checklist or an escalation of its own takes the lane's."""
    return tuple(
        StageState(
            name=stage.name,
            approvals=stage.approvals,
            checklist=stage.checklist if stage.checklist is not None else lane.checklist,
            users=stage.reviewers.users,
            groups=stage.reviewers.groups,
            escalate_after=stage.escalate_after or lane.escalate_after,
            escalate_to=stage.escalate_to or lane.escalate_to,
            opened_at=opened_at if index == 0 else None,
        )
        for index, stage in enumerate(lane.stages)
    )


def from_status(status: Mapping[str, Any]) -> tuple[StageState, ...]:
    """The stages a request's status carries (none: it is not staged)."""
    return tuple(StageState.from_json(raw) for raw in status.get("stages") or ())


@dataclass(frozen=True)
class StageTally:
    """The reviews so far, stage by stage."""

    open: int  # the open stage's index; len(approvers) once every stage has its approvals
    approvers: tuple[tuple[str, ...], ...]  # who counts, per stage
    denied: tuple[str, str] | None = None  # (who, at which stage): the first Deny that counts
    ignored: tuple[str, ...] = ()
    break_glass: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.open >= len(self.approvers)


def walk(
    stages: Sequence[StageState], reviews: Sequence[Review], requester: str | frozenset[str]
) -> StageTally:
    """Which reviews count, read in the order they were appended."""
    names = [stage.name for stage in stages]
    not_reviewers = {requester} if isinstance(requester, str) else requester
    approvers: list[list[str]] = [[] for _ in stages]
    counted_in: dict[str, str] = {}  # who -> the stage they count in
    ignored: list[str] = []
    glass: list[str] = []
    denied: tuple[str, str] | None = None
    open_index = 0
    for review in reviews:
        who = review.reviewer
        if who in not_reviewers:
            ignored.append(f"{who}: the requester cannot review its own request")
            continue
        if review.stage not in names:
            ignored.append(f"{who}: names no stage of this request ({review.stage!r})")
            continue
        index = names.index(review.stage)
        stage = stages[index]
        why = _why_not(review, stage, index, open_index, counted_in.get(who))
        if why is not None:
            ignored.append(f"{who}: {why}")
        elif review.decision == ReviewDecision.DENY:
            denied = denied or (who, stage.name)
        elif who not in approvers[index]:
            approvers[index].append(who)
            counted_in[who] = stage.name
            if review.break_glass:
                glass.append(who)
            if len(approvers[index]) >= stage.approvals:
                open_index = index + 1
    return StageTally(
        open_index, tuple(tuple(a) for a in approvers), denied, tuple(ignored), tuple(glass)
    )


def _why_not(
    review: Review, stage: StageState, index: int, open_index: int, counted_in: str | None
) -> str | None:
    """Why ``review`` of the stage at ``index`` does not count while ``open_index`` is open, or
    None: it counts (an Approve once per person, which the caller sees to). A Deny at a stage
    that has opened, from one of its reviewers, always counts: it decides."""
    approve = review.decision == ReviewDecision.APPROVE
    missing = sorted({item.id for item in stage.checklist} - review.acknowledged)
    checks = (
        (index > open_index, f"stage {stage.name} was not open yet"),
        (not stage.admits(review), f"not a reviewer of stage {stage.name}"),
        (
            review.decision not in (ReviewDecision.APPROVE, ReviewDecision.DENY),
            f"decision {review.decision!r} is neither Approve nor Deny",
        ),
        (approve and index < open_index, f"stage {stage.name} already had its approvals"),
        (
            approve and counted_in not in (None, stage.name),
            f"counts in stage {counted_in} already: one person counts in one stage only",
        ),
        (
            approve and bool(missing),
            f"did not acknowledge {', '.join(missing)} (stage {stage.name})",
        ),
    )
    return next((why for failed, why in checks if failed), None)


def _where(stages: Sequence[StageState], counted: StageTally) -> str:
    index = min(counted.open, len(stages) - 1)
    return f"stage {stages[index].name} ({index + 1} of {len(stages)})"


def judge(
    stages: Sequence[StageState], counted: StageTally, deadline: datetime, now: datetime
) -> Decision | None:
    """The decision the stages and the clock make at ``now``, or None: it still waits. A Deny
    at any stage decides; then the one deadline of the request (denied, fail safe, whatever
    approvals are in); then the last stage's approvals."""
    if counted.denied is not None:
        who, where = counted.denied
        message = f"{who} denied it at stage {where}"
        return Decision(Outcome.DENIED, Reason.HUMAN_DENIED, (who,), now, message)
    if now >= deadline:
        if counted.complete:
            state = "every stage approved, too late"
        else:
            stage = stages[counted.open]
            have = len(counted.approvers[counted.open])
            state = f"{have} of {stage.approvals} approval(s)"
        message = (
            f"the decision window closed at {format_time(deadline)} in"
            f" {_where(stages, counted)} with {state}: denied, fail safe"
        )
        return Decision(Outcome.DENIED, Reason.EXPIRED, (), now, message)
    if not counted.complete:
        return None
    by = tuple(who for approvers in counted.approvers for who in approvers)
    message = "approved by " + "; ".join(
        f"{', '.join(approvers)} (stage {stage.name})"
        for stage, approvers in zip(stages, counted.approvers, strict=True)
    )
    if counted.break_glass:
        message += f"; under break-glass: {', '.join(counted.break_glass)}"
        return Decision(Outcome.APPROVED, Reason.BREAK_GLASS_APPROVED, by, now, message)
    return Decision(Outcome.APPROVED, Reason.HUMAN_APPROVED, by, now, message)


def progress(stages: Sequence[StageState], counted: StageTally, deadline: datetime) -> str:
    """Where a staged request that still waits stands: the Decided condition's message."""
    stage = stages[min(counted.open, len(stages) - 1)]
    have = len(counted.approvers[min(counted.open, len(stages) - 1)])
    text = (
        f"{_where(stages, counted)}: {have} of {stage.approvals} approval(s) by"
        f" {format_time(deadline)}, else Denied (Expired)"
    )
    done = [
        f"{s.name} by {', '.join(a)}" for s, a in zip(stages, counted.approvers, strict=True) if a
    ]
    if done:
        text += "; approved so far: " + "; ".join(done)
    if counted.ignored:
        text += "; not counted: " + "; ".join(counted.ignored)
    return text


def status_json(
    stages: Sequence[StageState], counted: StageTally, now: datetime, deadline: datetime
) -> dict[str, Any]:
    """What the status of a staged request that waits says: the open stage, each stage with who
    approved it and when it opened, and the open stage's approvals, checklist and escalation
    (where clients that know no stages look). ``escalation`` is None (removed) when the open
    stage escalates to nobody before the deadline."""
    index = min(counted.open, len(stages) - 1)
    opened = [
        stage.opened_at or (now if position <= counted.open else None)
        for position, stage in enumerate(stages)
    ]
    current = stages[index]
    escalation: dict[str, Any] | None = None
    start = opened[index]
    if current.escalate_after is not None and start is not None:
        at = start + current.escalate_after
        if at < deadline:
            escalation = {"at": format_time(at), "to": list(current.escalate_to)}
    return {
        "stage": current.name,
        "stages": [
            replace(stage, opened_at=when).to_json(approvers)
            for stage, when, approvers in zip(stages, opened, counted.approvers, strict=True)
        ],
        "requiredApprovals": current.approvals,
        "checklist": [item.to_json() for item in current.checklist],
        "escalation": escalation,
    }

"""Approval stages as a policy declares them (a lane's or a rule's ``stages``), compiled.

What a waiting request does with them (the snapshot in its status, the walk over its reviews)
is ``stages.py``; this is only what the policy says, checked once when it is applied.
"""

from dataclasses import dataclass
from datetime import timedelta

from handoff.domain.policyparts import (
    ChecklistItem,
    Reviewers,
    compile_checklist,
    compile_duration,
    compile_reviewers,
)
from handoff.domain.resources import StageJSON

#: The most stages a lane may declare (the CRD's bound too).
MAX_STAGES = 5


@dataclass(frozen=True)
class Stage:
    """One step of a staged HITL lane: its reviewers decide it, in order, after the stage before
    it has its approvals. Its checklist is the lane's unless it names its own."""

    name: str
    reviewers: Reviewers
    approvals: int = 1
    checklist: tuple[ChecklistItem, ...] | None = None
    escalate_after: timedelta | None = None  # from when the stage opens
    escalate_to: tuple[str, ...] = ()


def compile_stages(raw: list[StageJSON] | None, where: str, errors: list[str]) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    for index, item in enumerate(raw or ()):
        name = item.get("name") or f"stages[{index}]"
        at = f"{where}.stages[{name}]"
        people = compile_reviewers(item.get("reviewers"))
        if not people:
            errors.append(f"{at} names no reviewers: nobody could approve it")
        approvals = item.get("approvals", 1)
        if approvals < 1:
            errors.append(f"{at}.approvals must be at least 1, not {approvals}")
            approvals = 1
        stages.append(Stage(
            name=name,
            reviewers=people,
            approvals=approvals,
            checklist=compile_checklist(item.get("checklist"), at, errors),
            escalate_after=compile_duration(item.get("escalateAfter"), None, at, errors),
            escalate_to=tuple(item.get("escalateTo") or ()),
        ))  # fmt: skip
    names = [stage.name for stage in stages]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"{where}: stage name {duplicate!r} is used more than once")
    if len(stages) > MAX_STAGES:
        errors.append(f"{where}: at most {MAX_STAGES} stages, not {len(stages)}")
    return tuple(stages)


def same_stage_reviewers(places: list[tuple[str, tuple[Stage, ...]]], errors: list[str]) -> None:
    """A stage's name is the right to approve it (the verb approve on
    agentactionpolicies/<policy>:<stage>), so a name used in two places must mean the same
    people in both."""
    seen: dict[str, tuple[str, Reviewers]] = {}
    for where, stages in places:
        for stage in stages:
            first = seen.setdefault(stage.name, (where, stage.reviewers))
            if first[1] != stage.reviewers:
                errors.append(
                    f"stage {stage.name!r} is in {first[0]} and {where} with different"
                    " reviewers: give it the same reviewers in both, or another name"
                )

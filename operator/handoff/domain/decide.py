"""The heart of Handoff: given the policies, a request, its reviews and the time, what happens next.

``decide`` is a pure function. It reads no clock, no cluster and no store: the handlers gather
its inputs, call it, and apply the ``Step`` it returns (one status patch, the decision, one
Event, when to look again, and which transition it makes). A request is classified once (its
first step: decided at once, or it starts waiting), then judged on each later event until it is
decided (``domain/reviews.py`` counts its reviews); a decided request never changes again. The
values it reads and returns are in ``domain/model.py``.
"""

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from handoff.domain.breakglass import (
    POST_INCIDENT_ACTION,
    POST_INCIDENT_CHECKLIST,
    POST_INCIDENT_WINDOW,
)
from handoff.domain.classify import Classification, RequestFacts, Verdict, classify
from handoff.domain.durations import format_duration
from handoff.domain.executors import KUBERNETES, WEBHOOK, allowed, kubernetes_change
from handoff.domain.model import (
    Decision,
    Event,
    RequestState,
    Review,
    Step,
    Waiting,
    condition,
    spec_digest,
)
from handoff.domain.policy import CompiledPolicy, Lane
from handoff.domain.policyparts import Reviewers
from handoff.domain.reasons import (
    CLASSIFIED,
    DECIDED,
    Outcome,
    Oversight,
    Phase,
    Reason,
    Transition,
)
from handoff.domain.resources import ConditionJSON
from handoff.domain.reviews import fast_approvals, judgement, progress, reviews_of, tally
from handoff.domain.stages import StageState, snapshot, walk
from handoff.domain.stages import from_status as stages_of
from handoff.domain.stages import judge as judge_stages
from handoff.domain.stages import progress as stage_progress
from handoff.domain.stages import status_json as stage_status
from handoff.domain.timefmt import format_time

# Imported from here by the controller, the policy tools and the SDK (they moved to model.py and
# reviews.py when decide.py was split).
__all__ = [
    "Event",
    "RequestState",
    "Review",
    "Step",
    "Waiting",
    "decide",
    "fast_approvals",
    "spec_digest",
]

# (condition type, status, reason, message): one update of a request's conditions.
ConditionUpdate = tuple[str, str, str, str]


def decide(policies: Iterable[CompiledPolicy], request: RequestState, now: datetime) -> Step:
    """The next step for ``request`` at ``now``. Decided requests never change again."""
    if request.decided:
        return Step()
    waiting = Waiting.from_status(request.status)
    policy_list = list(policies)
    if waiting is None:
        return _classify(policy_list, request, now)
    reviewers = next((p.reviewers for p in policy_list if p.name == waiting.policy), Reviewers())
    return _judge(waiting, reviewers, request, now)


def _classify(policies: list[CompiledPolicy], request: RequestState, now: datetime) -> Step:
    facts = request.facts
    classification = _post_incident(classify(policies, facts), facts)
    shadow = [_shadow_json(v) for v in classification.shadow]
    base: dict[str, Any] = {"specDigest": spec_digest(request.spec)}
    if shadow:
        base["shadow"] = shadow
    verdict = classification.verdict
    if verdict is None:
        message = f"no Enforce policy in {facts.namespace} governs agent {facts.agent}"
        decision = Decision(Outcome.DENIED, Reason.NO_POLICY, (), now, message)
        return _decided(request, decision, base, ("False", Reason.NO_POLICY, message))

    base |= {
        "tier": verdict.tier,
        "oversight": str(verdict.oversight),
        "policy": verdict.policy,
        "rule": verdict.rule,
    }
    policy = next(p for p in policies if p.name == verdict.policy)
    problem = _invalid(request, policy)
    if problem is not None:
        decision = Decision(Outcome.DENIED, Reason.INVALID, (), now, problem)
        refused = ("True", _classified_reason(verdict), verdict.message)
        return _decided(request, decision, base, refused)
    classified_reason = (
        Reason.POST_INCIDENT_REVIEW
        if facts.action == POST_INCIDENT_ACTION
        else _classified_reason(verdict)
    )
    classified = ("True", classified_reason, verdict.message)
    spent = _spent_budget(policy, verdict, request)
    if spent is None and (verdict.tier == 1 or (verdict.tier == 2 and facts.has_rollback)):
        reason = Reason.AUTO_APPROVED if verdict.tier == 1 else Reason.LOGGED
        message = verdict.message + (
            "; approved, HOOTL" if verdict.tier == 1 else "; approved and logged with its rollback"
        )
        decision = Decision(Outcome.APPROVED, reason, (), now, message)
        return _decided(request, decision, base, classified)

    # Someone has to look: tier 3, tier 4, tier 2 without a way back, or a spent budget.
    escalated = verdict.tier <= 2
    lane = verdict.policy_lane4 if verdict.tier == 1 else verdict.lane
    oversight = Oversight.HITL if escalated else verdict.oversight
    hold = lane.hold_for if oversight is Oversight.HOTL and lane.hold_for else None
    deadline = request.created + (hold or lane.decision_window)
    waiting = Waiting(
        verdict.tier, oversight, verdict.policy, verdict.rule, deadline, lane.approvals,
        lane.checklist, escalated,
    )  # fmt: skip
    waiting_reason, message = _waiting_words(verdict, spent, waiting)
    if escalated:  # the Classified condition says why people decide a tier 1 or 2 action
        classified = ("True", waiting_reason, verdict.message)
    patch = base | _waiting_json(request, lane, waiting)
    # Reviews can be there already (the operator was down): judge them in the same write.
    if lane.stages and oversight is Oversight.HITL:
        stages = snapshot(lane, request.created)
        walked = walk(stages, reviews_of(request), request.not_reviewers)
        patch |= stage_status(stages, walked, now, deadline)
        judged = judge_stages(stages, walked, deadline, now)
        if waiting_reason is Reason.AWAITING_REVIEW:
            message = f"{verdict.message}; {stage_progress(stages, walked, deadline)}"
    else:
        counted = tally(
            reviews_of(request), verdict.reviewers, lane.checklist, request.not_reviewers
        )
        judged = judgement(waiting, counted, now)
    if judged is not None:
        return _decided(request, judged, patch, classified)
    patch["conditions"] = _conditions(
        request, now, (CLASSIFIED, *classified), (DECIDED, "False", waiting_reason, message)
    )
    event = Event("Normal", waiting_reason, message)
    return Step(patch, None, event, deadline, Transition.STARTED_WAITING)


def _waiting_json(request: RequestState, lane: Lane, waiting: Waiting) -> dict[str, Any]:
    """What a request that waits for people carries in its status."""
    status: dict[str, Any] = {
        "oversight": str(waiting.oversight),
        "phase": Phase.QUEUED if waiting.oversight is Oversight.HOTL else Phase.AWAITING_APPROVAL,
        "deadline": format_time(waiting.deadline),
        "requiredApprovals": waiting.required_approvals,
        "checklist": [item.to_json() for item in waiting.checklist],
    }
    if "reviews" not in request.status:
        status["reviews"] = []
    if lane.min_review_seconds:
        status["minReviewSeconds"] = lane.min_review_seconds
    if lane.escalate_after is not None and request.created + lane.escalate_after < waiting.deadline:
        status["escalation"] = {
            "at": format_time(request.created + lane.escalate_after),
            "to": list(lane.escalate_to),
        }
    return status


def _waiting_words(verdict: Verdict, spent: str | None, waiting: Waiting) -> tuple[Reason, str]:
    """Why a request waits (the Decided reason; also the Classified one when it was sent to
    people from tier 1 or 2), and what it waits for."""
    if spent is not None:
        return Reason.BUDGET_EXCEEDED, f"{verdict.message}; {spent}, so a person decides"
    if waiting.escalated:
        text = f"{verdict.message}; tier 2 needs a rollback plan, so a person decides"
        return Reason.MISSING_ROLLBACK_PLAN, text
    deadline = format_time(waiting.deadline)
    if waiting.oversight is Oversight.HOTL:
        text = f"{verdict.message}; approved at {deadline} unless a reviewer denies"
        return Reason.IN_VETO_WINDOW, text
    text = (
        f"{verdict.message}; needs {waiting.required_approvals} approval(s) by {deadline},"
        " else Denied (Expired)"
    )
    return Reason.AWAITING_REVIEW, text


def _spent_budget(policy: CompiledPolicy, verdict: Verdict, request: RequestState) -> str | None:
    """Why a tier 1 or 2 action may not run on its own any more, or None."""
    if verdict.tier > 2:
        return None
    for budget in policy.budgets:
        used = request.budget_usage.get((policy.name, budget.name), 0)
        if budget.covers(request.facts.action) and used >= budget.max:
            return f"budget {budget.name} ({budget.max} per {format_duration(budget.per)}) is spent"
    return None


def _invalid(request: RequestState, policy: CompiledPolicy) -> str | None:
    """Why the request cannot be run as it asks, or None. A Kubernetes-executed request must name
    a change the governing policy allows; a Webhook-executed one needs a policy that names a
    webhook executor."""
    execution = request.spec.get("execution")
    if execution == KUBERNETES:
        change = kubernetes_change(request.spec, request.facts.namespace)
        if isinstance(change, str):
            return change
        return allowed(change, policy.kubernetes, policy.namespace)
    if execution == WEBHOOK and policy.webhook is None:
        return f"policy {policy.name} names no webhook executor (spec.executors.webhook)"
    return None


def _judge(waiting: Waiting, reviewers: Reviewers, request: RequestState, now: datetime) -> Step:
    reviews = reviews_of(request)
    stages = stages_of(request.status)
    if stages:
        return _judge_stages(waiting, stages, request, now)
    counted = tally(reviews, reviewers, waiting.checklist, request.not_reviewers)
    decision = judgement(waiting, counted, now)
    if decision is not None:
        return _decided(request, decision)
    # Still waiting: refresh the Decided condition so people see where the reviews stand.
    current = condition(request.status.get("conditions") or [], DECIDED)
    waiting_reason = str(current.get("reason")) if current else str(Reason.AWAITING_REVIEW)
    message = progress(waiting, counted)
    if current and (current.get("message") == message or not reviews):
        # Nothing to add: with no reviews yet, the condition written at classification already
        # says what the request waits for (a rewrite would be a second status write for one
        # transition, for every waiting request, again after every operator restart).
        return Step(wake_at=waiting.deadline)
    patch = {"conditions": _conditions(request, now, (DECIDED, "False", waiting_reason, message))}
    return Step(patch, wake_at=waiting.deadline, transition=Transition.PROGRESSED)


def _judge_stages(
    waiting: Waiting, stages: tuple[StageState, ...], request: RequestState, now: datetime
) -> Step:
    """A staged request: the stages it carries decide it, or it moves on to the next stage
    (a write, an Event and an announcement to that stage's reviewers), or it waits."""
    reviews = reviews_of(request)
    walked = walk(stages, reviews, request.not_reviewers)
    shown = stage_status(stages, walked, now, waiting.deadline)
    decision = judge_stages(stages, walked, waiting.deadline, now)
    if decision is not None:
        return _decided(request, decision, {k: shown[k] for k in ("stage", "stages")})
    current = condition(request.status.get("conditions") or [], DECIDED)
    message = stage_progress(stages, walked, waiting.deadline)
    written = all(request.status.get(k) == v for k, v in shown.items())
    if current and written and (current.get("message") == message or not reviews):
        return Step(wake_at=waiting.deadline)  # as in _judge: nothing new to say
    reason = str(current.get("reason")) if current else str(Reason.AWAITING_REVIEW)
    patch = shown | {"conditions": _conditions(request, now, (DECIDED, "False", reason, message))}
    if shown["stage"] == request.status.get("stage"):
        return Step(patch, wake_at=waiting.deadline, transition=Transition.PROGRESSED)
    event = Event("Normal", Reason.STAGE_OPENED, message)
    return Step(patch, None, event, waiting.deadline, Transition.STAGE_OPENED)


def _decided(
    request: RequestState,
    decision: Decision,
    base: dict[str, Any] | None = None,
    classified: tuple[str, str, str] | None = None,
) -> Step:
    """The one step that decides a request: ``base`` (what classification wrote, when it is
    decided as it is classified, with the Classified condition's status, reason and message)
    plus the phase, the decision and the Decided condition, and an Event that says the same."""
    approved = decision.outcome is Outcome.APPROVED
    updates: list[ConditionUpdate] = [] if classified is None else [(CLASSIFIED, *classified)]
    updates.append((DECIDED, "True", decision.reason, decision.message))
    patch = (base or {}) | {
        "phase": Phase.APPROVED if approved else Phase.DENIED,
        "decision": decision.to_json(),
        "conditions": _conditions(request, decision.at, *updates),
    }
    event = Event("Normal" if approved else "Warning", decision.reason, decision.message)
    transition = Transition.DECIDED if classified else Transition.DECIDED_AFTER_WAITING
    return Step(patch, decision, event, None, transition)


def _post_incident(classification: Classification, facts: RequestFacts) -> Classification:
    """A post-incident review (filed by the operator only: admission refuses it from anyone
    else) waits in tier 4 for the governing policy's normal reviewers, whatever its rules say,
    for a week, with a checklist of its own."""
    verdict = classification.verdict
    if facts.action != POST_INCIDENT_ACTION or verdict is None:
        return classification
    lane = Lane(Oversight.HITL, POST_INCIDENT_WINDOW, 1, POST_INCIDENT_CHECKLIST)
    message = f"post-incident review of {facts.target}: tier 4 for the policy's reviewers"
    review = replace(
        verdict, tier=4, rule=None, lane=lane, message=message, fail_closed=False, not_ready=False
    )
    return replace(classification, verdict=review)


def _classified_reason(verdict: Verdict) -> Reason:
    if verdict.not_ready:
        return Reason.POLICY_NOT_READY
    if verdict.fail_closed:
        return Reason.FAIL_CLOSED
    return Reason.RULE_MATCHED if verdict.rule else Reason.DEFAULT_TIER


def _shadow_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "policy": verdict.policy,
        "tier": verdict.tier,
        "oversight": str(verdict.oversight),
        "rule": verdict.rule,
        "message": verdict.message,
    }


def _conditions(
    request: RequestState, now: datetime, *updates: ConditionUpdate
) -> list[ConditionJSON]:
    """The request's conditions with ``updates`` applied; a transition time moves only when the
    status does (the Kubernetes convention)."""
    current: list[ConditionJSON] = list(request.status.get("conditions") or [])
    for kind, status, reason, message in updates:
        old = condition(current, kind)
        moved = old is None or old.get("status") != status
        new: ConditionJSON = {
            "type": kind,
            "status": status,
            "reason": str(reason),
            "message": message,
            "lastTransitionTime": format_time(now.replace(microsecond=0))
            if moved or old is None
            else str(old.get("lastTransitionTime")),
            "observedGeneration": request.generation,
        }
        current = [c for c in current if c.get("type") != kind] + [new]
    return current

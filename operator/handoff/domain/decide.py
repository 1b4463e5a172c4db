"""The heart of Handoff: given the policies, a request, its reviews and the time, what happens next.

``decide`` is a pure function. It reads no clock, no cluster and no store: the handlers gather
its inputs, call it, and apply the ``Step`` it returns (one status patch, one Event, a timer).
"""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from handoff.domain.policy import ChecklistItem, CompiledPolicy, Lane, Reviewers
from handoff.domain.reasons import (
    CLASSIFIED,
    DECIDED,
    Outcome,
    Oversight,
    Phase,
    Reason,
    ReviewDecision,
)
from handoff.domain.resources import ConditionJSON, RequestJSON, ReviewJSON
from handoff.domain.timefmt import format_time, parse_time


@dataclass(frozen=True)
class Review:
    reviewer: str
    decision: str
    acknowledged: frozenset[str] = frozenset()
    comment: str = ""
    break_glass: bool = False  # admitted on the policy's verb break-glass, not approve

    @classmethod
    def from_json(cls, raw: ReviewJSON) -> "Review":
        return cls(
            reviewer=str(raw.get("reviewer", "")),
            decision=str(raw.get("decision", "")),
            acknowledged=frozenset(raw.get("acknowledged") or ()),
            comment=str(raw.get("comment", "")),
            break_glass=raw.get("breakGlass") is True,
        )


@dataclass(frozen=True)
class Waiting:
    """The classification a waiting request carries in its status, read back on later events."""

    tier: int
    oversight: Oversight
    policy: str
    rule: str | None
    deadline: datetime
    required_approvals: int
    checklist: tuple[ChecklistItem, ...]
    escalated: bool = False  # tier 2 sent to review for want of a rollback plan

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> "Waiting | None":
        if status.get("decision") or not status.get("deadline") or not status.get("policy"):
            return None
        classified = _condition(status.get("conditions") or [], CLASSIFIED)
        return cls(
            tier=int(status["tier"]),
            oversight=Oversight(status["oversight"]),
            policy=str(status["policy"]),
            rule=status.get("rule"),
            deadline=parse_time(status["deadline"]),
            required_approvals=int(status.get("requiredApprovals") or 1),
            checklist=tuple(
                ChecklistItem(c["id"], c["text"]) for c in status.get("checklist") or ()
            ),
            escalated=bool(classified and classified.get("reason") == Reason.MISSING_ROLLBACK_PLAN),
        )


@dataclass(frozen=True)
class RequestState:
    """Everything ``decide`` needs to know about one ActionRequest."""

    facts: RequestFacts
    created: datetime
    requester: str  # the user name of whoever filed it: never a valid reviewer of it
    generation: int = 1
    spec: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    budget_usage: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (policy, budget)

    @classmethod
    def from_json(cls, body: RequestJSON) -> "RequestState":
        """Read an ActionRequest as the API server returns it."""
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        namespace = str(meta.get("namespace", ""))
        agent = str(spec.get("agent", ""))
        return cls(
            facts=RequestFacts.from_spec(namespace, spec, meta.get("labels")),
            created=parse_time(meta["creationTimestamp"]),
            requester=service_account_user(namespace, agent),
            generation=int(meta.get("generation") or 1),
            spec=spec,
            status=body.get("status") or {},
        )

    @property
    def decided(self) -> bool:
        return bool(self.status.get("decision"))

    @property
    def reviews(self) -> tuple[Review, ...]:
        return tuple(Review.from_json(r) for r in self.status.get("reviews") or ())


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: Reason
    by: tuple[str, ...]
    at: datetime
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            "reason": str(self.reason),
            "by": list(self.by),
            "at": format_time(self.at),
            "message": self.message,
        }


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Step:
    """What to apply: a status patch (None: nothing to write), an Event, when to look again."""

    patch: dict[str, Any] | None = None
    decision: Decision | None = None
    event: Event | None = None
    wake_at: datetime | None = None
    classification: Classification | None = None


@dataclass(frozen=True)
class Tally:
    """The reviews so far, judged against the lane."""

    approvers: tuple[str, ...]
    deniers: tuple[str, ...]
    ignored: tuple[str, ...]  # "bob: not acknowledged rollback", for the condition message
    break_glass: tuple[str, ...] = ()  # approvers who approved under break-glass


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


def fast_approvals(
    request: RequestState, already_seen: int, waiting_since: datetime, now: datetime
) -> int:
    """How many Approve reviews after the first ``already_seen`` came sooner than the lane's
    minimum review time after the request started waiting: a rubber-stamp signal."""
    minimum = int(request.status.get("minReviewSeconds") or 0)
    if not minimum or (now - waiting_since).total_seconds() >= minimum:
        return 0
    return sum(
        1 for review in request.reviews[already_seen:] if review.decision == ReviewDecision.APPROVE
    )


def tally(
    reviews: Sequence[Review],
    reviewers: Reviewers,
    checklist: Sequence[ChecklistItem],
    requester: str,
) -> Tally:
    """Which reviews count. An Approve counts once per reviewer, only from a listed reviewer who
    is not the requester and acknowledged every checklist item; a Deny needs only the first two.

    Group membership cannot be seen from here (the reviews carry user names only): a reviewer of
    a policy that names groups is vouched for by admission, which checks the caller's verb
    ``approve`` on the policy, the way Kubernetes checks ``approve`` on signers for CSRs. A
    break-glass review is vouched for the same way, on the verb ``break-glass``.
    """
    required = {item.id for item in checklist}
    approvers: list[str] = []
    deniers: list[str] = []
    ignored: list[str] = []
    glass: list[str] = []
    for review in reviews:
        who = review.reviewer
        if who == requester:
            ignored.append(f"{who}: the requester cannot review its own request")
        elif who not in reviewers.users and not reviewers.groups and not review.break_glass:
            ignored.append(f"{who}: not a reviewer of this policy")
        elif review.decision == ReviewDecision.DENY:
            if who not in deniers:
                deniers.append(who)
        elif review.decision != ReviewDecision.APPROVE:
            ignored.append(f"{who}: decision {review.decision!r} is neither Approve nor Deny")
        elif missing := sorted(required - review.acknowledged):
            ignored.append(f"{who}: did not acknowledge {', '.join(missing)}")
        elif who not in approvers:
            approvers.append(who)
            if review.break_glass:
                glass.append(who)
    return Tally(tuple(approvers), tuple(deniers), tuple(ignored), tuple(glass))


def service_account_user(namespace: str, name: str) -> str:
    """The user name Kubernetes gives a ServiceAccount's requests."""
    return f"system:serviceaccount:{namespace}:{name}"


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A digest of what was proposed: what was approved is what runs, byte for byte."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


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
        patch = base | {
            "phase": Phase.DENIED,
            "decision": decision.to_json(),
            "conditions": _conditions(
                request,
                now,
                (CLASSIFIED, "False", Reason.NO_POLICY, message),
                (DECIDED, "True", Reason.NO_POLICY, message),
            ),
        }
        return Step(
            patch, decision, Event("Warning", Reason.NO_POLICY, message), None, classification
        )

    base |= {
        "tier": verdict.tier,
        "oversight": str(verdict.oversight),
        "policy": verdict.policy,
        "rule": verdict.rule,
    }
    refused = _refuse_invalid(request, policies, verdict, base, now)
    if refused is not None:
        return replace(refused, classification=classification)
    classified_reason = (
        Reason.POST_INCIDENT_REVIEW
        if facts.action == POST_INCIDENT_ACTION
        else _classified_reason(verdict)
    )
    spent = _spent_budget(policies, verdict, request)
    if spent is None and (verdict.tier == 1 or (verdict.tier == 2 and facts.has_rollback)):
        reason = Reason.AUTO_APPROVED if verdict.tier == 1 else Reason.LOGGED
        message = verdict.message + (
            "; approved, HOOTL" if verdict.tier == 1 else "; approved and logged with its rollback"
        )
        decision = Decision(Outcome.APPROVED, reason, (), now, message)
        patch = base | {
            "phase": Phase.APPROVED,
            "decision": decision.to_json(),
            "conditions": _conditions(
                request,
                now,
                (CLASSIFIED, "True", classified_reason, verdict.message),
                (DECIDED, "True", reason, message),
            ),
        }
        return Step(patch, decision, Event("Normal", reason, message), None, classification)

    # Someone has to look: tier 3, tier 4, tier 2 without a way back, or a spent budget.
    escalated = verdict.tier <= 2
    lane = verdict.policy_lane4 if verdict.tier == 1 else verdict.lane
    oversight = Oversight.HITL if escalated else verdict.oversight
    hold = lane.hold_for if oversight is Oversight.HOTL and lane.hold_for else None
    deadline = request.created + (hold or lane.decision_window)
    classified_reason, waiting_reason, message = _waiting_words(
        verdict,
        classified_reason=classified_reason,
        spent=spent,
        escalated=escalated,
        oversight=oversight,
        deadline=deadline,
        approvals=lane.approvals,
    )
    base |= {
        "oversight": str(oversight),
        "phase": Phase.QUEUED if oversight is Oversight.HOTL else Phase.AWAITING_APPROVAL,
        "deadline": format_time(deadline),
        "requiredApprovals": lane.approvals,
        "checklist": [item.to_json() for item in lane.checklist],
    }
    if "reviews" not in request.status:
        base["reviews"] = []
    if lane.min_review_seconds:
        base["minReviewSeconds"] = lane.min_review_seconds
    if lane.escalate_after is not None and request.created + lane.escalate_after < deadline:
        base["escalation"] = {
            "at": format_time(request.created + lane.escalate_after),
            "to": list(lane.escalate_to),
        }
    waiting = Waiting(
        verdict.tier, oversight, verdict.policy, verdict.rule, deadline, lane.approvals,
        lane.checklist, escalated,
    )  # fmt: skip
    # Reviews can be there already (the operator was down): judge them in the same write.
    judged = _judge(waiting, verdict.reviewers, request, now)
    if judged.decision is not None and judged.patch is not None:
        patch = base | judged.patch
        patch["conditions"] = _conditions(
            request,
            now,
            (CLASSIFIED, "True", classified_reason, verdict.message),
            (DECIDED, "True", judged.decision.reason, judged.decision.message),
        )
        return Step(patch, judged.decision, judged.event, None, classification)
    base["conditions"] = _conditions(
        request,
        now,
        (CLASSIFIED, "True", classified_reason, verdict.message),
        (DECIDED, "False", waiting_reason, message),
    )
    event = Event("Normal", waiting_reason, message)
    return Step(base, None, event, deadline, classification)


def _waiting_words(
    verdict: Verdict,
    *,
    classified_reason: Reason,
    spent: str | None,
    escalated: bool,
    oversight: Oversight,
    deadline: datetime,
    approvals: int,
) -> tuple[Reason, Reason, str]:
    """The Classified and Decided reasons of a request that waits, and what it waits for."""
    if spent is not None:
        return (
            Reason.BUDGET_EXCEEDED,
            Reason.BUDGET_EXCEEDED,
            f"{verdict.message}; {spent}, so a person decides",
        )
    if escalated:
        text = f"{verdict.message}; tier 2 needs a rollback plan, so a person decides"
        return Reason.MISSING_ROLLBACK_PLAN, Reason.MISSING_ROLLBACK_PLAN, text
    if oversight is Oversight.HOTL:
        text = f"{verdict.message}; approved at {format_time(deadline)} unless a reviewer denies"
        return classified_reason, Reason.IN_VETO_WINDOW, text
    text = (
        f"{verdict.message}; needs {approvals} approval(s) by {format_time(deadline)},"
        " else Denied (Expired)"
    )
    return classified_reason, Reason.AWAITING_REVIEW, text


def _spent_budget(
    policies: list[CompiledPolicy], verdict: Verdict, request: RequestState
) -> str | None:
    """Why a tier 1 or 2 action may not run on its own any more, or None."""
    if verdict.tier > 2:
        return None
    policy = next(p for p in policies if p.name == verdict.policy)
    for budget in policy.budgets:
        used = request.budget_usage.get((policy.name, budget.name), 0)
        if budget.covers(request.facts.action) and used >= budget.max:
            return f"budget {budget.name} ({budget.max} per {format_duration(budget.per)}) is spent"
    return None


def _refuse_invalid(
    request: RequestState,
    policies: list[CompiledPolicy],
    verdict: Verdict,
    base: dict[str, Any],
    now: datetime,
) -> Step | None:
    """A Kubernetes-executed request must name a change the governing policy allows; a
    Webhook-executed one needs a policy that names a webhook executor."""
    execution = request.spec.get("execution")
    policy = next(p for p in policies if p.name == verdict.policy)
    problem: str | None = None
    if execution == KUBERNETES:
        change = kubernetes_change(request.spec, request.facts.namespace)
        problem = (
            change
            if isinstance(change, str)
            else allowed(change, policy.kubernetes, policy.namespace)
        )
    elif execution == WEBHOOK and policy.webhook is None:
        problem = f"policy {policy.name} names no webhook executor (spec.executors.webhook)"
    if problem is None:
        return None
    decision = Decision(Outcome.DENIED, Reason.INVALID, (), now, problem)
    patch = base | {
        "phase": Phase.DENIED,
        "decision": decision.to_json(),
        "conditions": _conditions(
            request, now,
            (CLASSIFIED, "True", _classified_reason(verdict), verdict.message),
            (DECIDED, "True", Reason.INVALID, problem),
        ),
    }  # fmt: skip
    return Step(patch, decision, Event("Warning", Reason.INVALID, problem))


def _judge(waiting: Waiting, reviewers: Reviewers, request: RequestState, now: datetime) -> Step:
    reviews = request.reviews
    if request.facts.action == POST_INCIDENT_ACTION:  # looking back is for the normal reviewers
        reviews = tuple(r for r in reviews if not r.break_glass)
    counted = tally(reviews, reviewers, waiting.checklist, request.requester)
    veto_lane = waiting.oversight is Oversight.HOTL
    decision: Decision | None = None
    if counted.deniers:
        reason = Reason.VETOED if veto_lane else Reason.HUMAN_DENIED
        verb = "vetoed" if veto_lane else "denied"
        decision = Decision(
            Outcome.DENIED, reason, counted.deniers[:1], now, f"{counted.deniers[0]} {verb} it"
        )
    elif now >= waiting.deadline:
        if veto_lane:
            message = "the hold passed with no veto"
            decision = Decision(Outcome.APPROVED, Reason.NOT_VETOED, (), now, message)
        else:
            have = len(counted.approvers)
            message = (
                f"the decision window closed at {format_time(waiting.deadline)} with"
                f" {have} of {waiting.required_approvals} approval(s): denied, fail safe"
            )
            decision = Decision(Outcome.DENIED, Reason.EXPIRED, (), now, message)
    elif len(counted.approvers) >= waiting.required_approvals:
        who = ", ".join(counted.approvers)
        if counted.break_glass:
            message = f"approved by {who}; under break-glass: {', '.join(counted.break_glass)}"
            decision = Decision(
                Outcome.APPROVED, Reason.BREAK_GLASS_APPROVED, counted.approvers, now, message
            )
        else:
            decision = Decision(
                Outcome.APPROVED,
                Reason.HUMAN_APPROVED,
                counted.approvers,
                now,
                f"approved by {who}",
            )

    if decision is not None:
        phase = Phase.APPROVED if decision.outcome is Outcome.APPROVED else Phase.DENIED
        patch = {
            "phase": phase,
            "decision": decision.to_json(),
            "conditions": _conditions(
                request, now, (DECIDED, "True", decision.reason, decision.message)
            ),
        }
        kind = "Normal" if decision.outcome is Outcome.APPROVED else "Warning"
        return Step(patch, decision, Event(kind, decision.reason, decision.message))

    # Still waiting: refresh the Decided condition so people see where the reviews stand.
    current = _condition(request.status.get("conditions") or [], DECIDED)
    waiting_reason = str(current.get("reason")) if current else str(Reason.AWAITING_REVIEW)
    message = _progress(waiting, counted)
    if current and (current.get("message") == message or not reviews):
        # Nothing to add: with no reviews yet, the condition written at classification already
        # says what the request waits for (a rewrite would be a second status write for one
        # transition, for every waiting request, again after every operator restart).
        return Step(wake_at=waiting.deadline)
    patch = {"conditions": _conditions(request, now, (DECIDED, "False", waiting_reason, message))}
    return Step(patch, wake_at=waiting.deadline)


def _progress(waiting: Waiting, counted: Tally) -> str:
    if waiting.oversight is Oversight.HOTL:
        text = f"approved at {format_time(waiting.deadline)} unless a reviewer denies"
    else:
        text = (
            f"{len(counted.approvers)} of {waiting.required_approvals} approval(s)"
            f" by {format_time(waiting.deadline)}, else Denied (Expired)"
        )
    if counted.approvers and waiting.oversight is Oversight.HITL:
        text += f"; approved so far by {', '.join(counted.approvers)}"
    if counted.ignored:
        text += "; not counted: " + "; ".join(counted.ignored)
    return text


def _post_incident(classification: Classification, facts: RequestFacts) -> Classification:
    """A post-incident review (filed by the operator only: admission refuses it from anyone
    else) waits in tier 4 for the governing policy's normal reviewers, whatever its rules say,
    for a week, with a checklist of its own."""
    verdict = classification.verdict
    if facts.action != POST_INCIDENT_ACTION or verdict is None:
        return classification
    lane = Lane(Oversight.HITL, POST_INCIDENT_WINDOW, 1, POST_INCIDENT_CHECKLIST)
    message = f"post-incident review of {facts.target}: tier 4 for the policy's reviewers"
    review = replace(verdict, tier=4, rule=None, lane=lane, message=message, fail_closed=False)
    return replace(classification, verdict=review)


def _classified_reason(verdict: Verdict) -> Reason:
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


def _condition(conditions: Sequence[ConditionJSON], kind: str) -> ConditionJSON | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _conditions(
    request: RequestState, now: datetime, *updates: tuple[str, str, str, str]
) -> list[ConditionJSON]:
    """The request's conditions with ``updates`` applied; a transition time moves only when the
    status does (the Kubernetes convention)."""
    current: list[ConditionJSON] = list(request.status.get("conditions") or [])
    for kind, status, reason, message in updates:
        old = _condition(current, kind)
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

"""What the reviews of a waiting request add up to: which of them count (``tally``), whether they
and the clock decide it (``judgement``), and, while they do not, where they stand (``progress``).
Pure, like ``decide``, which calls them; the time is passed in."""

from collections.abc import Sequence
from datetime import datetime

from handoff.domain.breakglass import POST_INCIDENT_ACTION
from handoff.domain.model import Decision, RequestState, Review, Tally, Waiting
from handoff.domain.policyparts import ChecklistItem, Reviewers
from handoff.domain.reasons import Outcome, Oversight, Reason, ReviewDecision
from handoff.domain.timefmt import format_time


def tally(
    reviews: Sequence[Review],
    reviewers: Reviewers,
    checklist: Sequence[ChecklistItem],
    requester: str | frozenset[str],
) -> Tally:
    """Which reviews count. An Approve counts once per reviewer, only from a listed reviewer who
    is not the requester and acknowledged every checklist item; a Deny needs only the first two.

    Group membership cannot be seen from here (the reviews carry user names only): a reviewer of
    a policy that names groups is vouched for by admission, which checks the caller's verb
    ``approve`` on the policy, the way Kubernetes checks ``approve`` on signers for CSRs. A
    break-glass review is vouched for the same way, on the verb ``break-glass``.
    """
    required = {item.id for item in checklist}
    not_reviewers = {requester} if isinstance(requester, str) else requester
    approvers: list[str] = []
    deniers: list[str] = []
    ignored: list[str] = []
    glass: list[str] = []
    for review in reviews:
        who = review.reviewer
        if who in not_reviewers:
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


def reviews_of(request: RequestState) -> tuple[Review, ...]:
    """The reviews that may count. Looking back on a break-glass approval (a post-incident
    review) is for the policy's normal reviewers: break-glass reviews of it are left out."""
    reviews = request.reviews
    if request.facts.action == POST_INCIDENT_ACTION:
        reviews = tuple(r for r in reviews if not r.break_glass)
    return reviews


def judgement(waiting: Waiting, counted: Tally, now: datetime) -> Decision | None:
    """The decision the counted reviews and the clock make at ``now``, or None: it still waits.
    One Deny decides; then the deadline (a hold passed with no veto approves, a window that
    closes denies, fail safe, whatever approvals are in); then enough approvals."""
    veto_lane = waiting.oversight is Oversight.HOTL
    if counted.deniers:
        reason = Reason.VETOED if veto_lane else Reason.HUMAN_DENIED
        verb = "vetoed" if veto_lane else "denied"
        message = f"{counted.deniers[0]} {verb} it"
        return Decision(Outcome.DENIED, reason, counted.deniers[:1], now, message)
    if now >= waiting.deadline:
        if veto_lane:
            message = "the hold passed with no veto"
            return Decision(Outcome.APPROVED, Reason.NOT_VETOED, (), now, message)
        message = (
            f"the decision window closed at {format_time(waiting.deadline)} with"
            f" {len(counted.approvers)} of {waiting.required_approvals} approval(s): denied,"
            " fail safe"
        )
        return Decision(Outcome.DENIED, Reason.EXPIRED, (), now, message)
    if len(counted.approvers) < waiting.required_approvals:
        return None
    who = ", ".join(counted.approvers)
    if counted.break_glass:
        message = f"approved by {who}; under break-glass: {', '.join(counted.break_glass)}"
        return Decision(
            Outcome.APPROVED, Reason.BREAK_GLASS_APPROVED, counted.approvers, now, message
        )
    message = f"approved by {who}"
    return Decision(Outcome.APPROVED, Reason.HUMAN_APPROVED, counted.approvers, now, message)


def progress(waiting: Waiting, counted: Tally) -> str:
    """Where the reviews of a request that still waits stand: the Decided condition's message."""
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

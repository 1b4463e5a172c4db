"""What a review must carry before it is written, wherever it is made (console, Slack): every
checklist item acknowledged and the lane's minimum review time spent, for an approval; a
reason, for a denial. The cluster judges who may decide; these keep the reviewer honest."""

from collections.abc import Sequence
from datetime import datetime

from handoff.review.client import ReviewError
from handoff.review.package import Package


def check_review(
    package: Package,
    decision: str,
    acknowledged: Sequence[str],
    comment: str,
    *,
    opened: datetime | None,
    now: datetime,
) -> None:
    """Raise ReviewError with the sentence to show when this review may not be written."""
    if decision == "Approve":
        missing = [item for item, _ in package.checklist if item not in acknowledged]
        if missing:
            raise ReviewError("Tick every checklist item before approving: " + ", ".join(missing))
        hold = package.min_review_seconds
        if hold and (opened is None or (now - opened).total_seconds() < hold):
            raise ReviewError(f"This lane asks for at least {hold}s of review; read it again.")
    elif not comment.strip():
        raise ReviewError("Say why you deny it: the agent and the audit trail need the reason.")


def may_not_decide(user: str, policy: str, stage: str = "") -> str:
    """Why a person without the right to decide this policy's requests (or the open stage of
    a staged one) is refused."""
    if stage:
        return (
            f"{user} may not review stage {stage} of requests of policy {policy}: that takes the"
            f" verb approve on agentactionpolicies/{policy}:{stage}, which the policy grants to"
            f" the reviewers of stage {stage}."
        )
    return (
        f"{user} may not decide requests of policy {policy}: that takes the verb approve on"
        f" agentactionpolicies/{policy}, which the policy grants to its reviewers."
    )

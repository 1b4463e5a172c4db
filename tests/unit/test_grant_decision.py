"""Why a grant is refused when its prompt was decided otherwise than by its author's approval:
the sentence names the outcome, the reason and who decided (or nobody), whole."""

from datetime import UTC, datetime

import pytest
from handoff.domain.globs import Glob
from handoff.domain.grants import Grant, _decision_problem

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def grant() -> Grant:
    return Grant(
        namespace="agents", name="g1", author="alice", agent="payments-agent",
        action="payments.refund", policy="payments", rule="small-refunds",
        target=Glob.compile("stripe:*"), condition=None, created=AT, expires=AT, max_uses=3,
        prompted_by="refund-1",
    )  # fmt: skip


WHY = ": a grant comes only from an approval that counted"


# Each row: the prompt's decision, and the refusal (None: the author's approval counted).
@pytest.mark.parametrize(
    ("decision", "refusal"),
    [
        (None, None),
        ({"outcome": "Approved", "reason": "HumanApproved", "by": ["bob", "alice"]}, None),
        ({"outcome": "Approved", "reason": "HumanApproved", "by": ["bob", "carol"]},
         "alice's approval did not decide refund-1 (it was decided Approved, HumanApproved, by"
         " bob, carol)" + WHY),
        ({"outcome": "Denied", "reason": "Expired"},
         "alice's approval did not decide refund-1 (it was decided Denied, Expired, by nobody)"
         + WHY),
        ({"outcome": "Approved", "reason": "BreakGlass", "by": ["alice"]},
         "alice's approval did not decide refund-1 (it was decided Approved, BreakGlass, by"
         " alice)" + WHY),
    ],
)  # fmt: skip
def test_a_prompt_decided_otherwise_says_how_and_by_whom(
    decision: dict[str, object] | None, refusal: str | None
) -> None:
    assert _decision_problem(grant(), decision) == refusal

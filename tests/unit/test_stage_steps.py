"""The steps ``decide`` returns for a request that waits in approval stages, compared whole: when
it wakes again, the Decided condition (status, reason, time), the Event when a stage opens, and
when each stage opened. test_stages.py walks the same lane; this pins every field of the step."""

from dataclasses import replace
from typing import Any

from handoff.domain.decide import decide
from handoff.domain.model import Event, Step
from handoff.domain.reasons import Reason, Transition
from handoff.domain.timefmt import format_time

from .helpers import AGENT, CREATED, NS, applied, at, request, reviewed
from .test_stages import ack, staged_policy

REQUESTER = f"system:serviceaccount:{NS}:{AGENT}"
DEADLINE = at(minutes=15)  # the staged lane's default window, from CREATED


def waiting_after(*reviews: dict[str, Any]) -> Any:
    """The request classified at CREATED + 1 s and written, with ``reviews`` appended since."""
    policy = staged_policy()
    state = applied(request(), decide([policy], request(), at(seconds=1)))
    return policy, reviewed(state, *reviews)


def decided_condition(step: Step) -> dict[str, Any]:
    assert step.patch is not None
    [found] = [c for c in step.patch["conditions"] if c["type"] == "Decided"]
    return dict(found)


def test_the_first_stage_opens_when_the_request_is_created_not_when_it_is_classified() -> None:
    step = decide([staged_policy()], request(), at(seconds=41))
    assert step.patch is not None
    assert [s.get("openedAt") for s in step.patch["stages"]] == [format_time(CREATED), None]
    assert step.wake_at == DEADLINE


def test_reviews_there_at_classification_open_the_next_stage_now() -> None:
    early = reviewed(request(), ack("alice", "manager"))
    step = decide([staged_policy()], early, at(seconds=41))
    assert step.patch is not None
    assert step.patch["stage"] == "finance"
    assert [s.get("openedAt") for s in step.patch["stages"]] == [
        format_time(CREATED),
        format_time(at(seconds=41)),
    ]
    assert step.patch["escalation"] == {"at": format_time(at(minutes=5, seconds=41)), "to": ["cfo"]}


def test_the_requesters_own_review_never_counts_at_classification_nor_later() -> None:
    # A stage of groups admits anyone admission let through: only the requester rule stops it.
    groups = {"name": "manager", "reviewers": {"groups": ["managers"]}}
    policy = staged_policy(stages=[groups])
    own = ack(REQUESTER, "manager")
    first = decide([policy], reviewed(request(), own), at(seconds=1))
    assert first.decision is None
    assert "the requester cannot review its own request" in decided_condition(first)["message"]
    state = applied(request(), decide([policy], request(), at(seconds=1)))
    later = decide([policy], reviewed(state, own), at(minutes=1))
    assert later.decision is None
    assert "the requester cannot review its own request" in decided_condition(later)["message"]


def test_nothing_new_wakes_at_the_deadline_and_writes_nothing() -> None:
    policy, state = waiting_after()
    assert decide([policy], state, at(minutes=1)) == Step(wake_at=DEADLINE)


def test_a_review_that_does_not_open_the_next_stage_is_progress() -> None:
    policy, state = waiting_after(ack("carol", "finance", "ledger"))
    before = decided_condition(decide([staged_policy()], request(), at(seconds=1)))
    step = decide([policy], state, at(minutes=1))
    condition = decided_condition(step)
    message = (
        f"stage manager (1 of 2): 0 of 1 approval(s) by {format_time(DEADLINE)}, else Denied"
        " (Expired); not counted: carol: stage finance was not open yet"
    )
    assert condition == {
        "type": "Decided",
        "status": "False",
        "reason": "AwaitingReview",
        "message": message,
        "lastTransitionTime": before["lastTransitionTime"],  # still False: the time stays
        "observedGeneration": 1,
    }
    assert (step.decision, step.event, step.wake_at, step.transition) == (
        None, None, DEADLINE, Transition.PROGRESSED,
    )  # fmt: skip


def test_progress_keeps_the_decided_reason_there_and_says_awaiting_review_when_there_is_none() -> (
    None
):
    policy, state = waiting_after(ack("carol", "finance", "ledger"))
    conditions = [
        c | {"reason": "Escalated"} if c["type"] == "Decided" else c
        for c in state.status["conditions"]
    ]
    escalated = replace(state, status=state.status | {"conditions": conditions})
    assert decided_condition(decide([policy], escalated, at(minutes=1)))["reason"] == "Escalated"
    others = [c for c in state.status["conditions"] if c["type"] != "Decided"]
    bare = replace(state, status=state.status | {"conditions": others})
    condition = decided_condition(decide([policy], bare, at(minutes=1, seconds=30)))
    assert (condition["status"], condition["reason"], condition["lastTransitionTime"]) == (
        "False", "AwaitingReview", format_time(at(minutes=1, seconds=30)),
    )  # fmt: skip


def test_a_stage_that_opens_is_an_event_and_wakes_at_the_deadline() -> None:
    policy, state = waiting_after(ack("alice", "manager"))
    step = decide([policy], state, at(minutes=1))
    message = (
        f"stage finance (2 of 2): 0 of 2 approval(s) by {format_time(DEADLINE)}, else Denied"
        " (Expired); approved so far: manager by alice"
    )
    assert step.event == Event("Normal", Reason.STAGE_OPENED, message)
    assert (step.decision, step.wake_at, step.transition) == (
        None, DEADLINE, Transition.STAGE_OPENED,
    )  # fmt: skip
    condition = decided_condition(step)
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False", "AwaitingReview", message,
    )  # fmt: skip

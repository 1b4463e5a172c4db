"""What follows a step, as data: ``followups`` table by table, like ``decide``."""

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from handoff.domain import followups as fx
from handoff.domain.announce import DECIDED, PENDING
from handoff.domain.decide import Decision, Event, RequestState, Step
from handoff.domain.reasons import Outcome, Reason, Transition

from tests.unit.helpers import CREATED, request

APPROVED = Decision(Outcome.APPROVED, Reason.AUTO_APPROVED, (), CREATED, "tier 1")
DENIED = Decision(Outcome.DENIED, Reason.EXPIRED, (), CREATED, "the window passed")
EVENT = Event("Normal", "AutoApproved", "tier 1")
WAKE = CREATED + timedelta(minutes=30)
QUEUES = Transition.STARTED_WAITING  # what decide() says of the step that queues a request
QUEUED = {"phase": "AwaitingApproval", "tier": 4, "deadline": "2026-11-29T18:30:00Z"}


def body(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "req-1", "namespace": "agents"},
            "spec": {"agent": "a", "action": "x", **spec}, "status": status}  # fmt: skip


def decided(
    outcome: str = "Approved", reason: str = "AutoApproved", **extra: Any
) -> dict[str, Any]:
    return {"phase": outcome, "tier": 1, "policy": "payments",
            "decision": {"outcome": outcome, "reason": reason, "at": "2026-11-29T18:00:00Z"},
            **extra}  # fmt: skip


def waited(state: RequestState) -> RequestState:
    return replace(state, status=dict(QUEUED))


def kinds(effects: list[fx.Effect]) -> list[str]:
    return [fx.name(e) for e in effects]


COMMON = ["CountFastApprovals", "SpendBudget"]
ROWS = [
    # (why, before, step, after (status, spec), effects by kind)
    ("auto-approved at once", request(), Step({"phase": "Approved"}, APPROVED, EVENT),
     body(decided()),
     [*COMMON, "StopWaiting", "CountDecision", "Publish", "PostEvent", "ArmRetention",
      "NoteForReports"]),
    ("decided after waiting: announced", waited(request()), Step({}, DENIED, EVENT),
     body(decided("Denied", "Expired")),
     [*COMMON, "StopWaiting", "CountDecision", "Announce", "Publish", "PostEvent",
      "ArmRetention", "NoteForReports"]),
    ("queued now: waits, announced pending", request(), Step(QUEUED, None, EVENT, WAKE, transition=QUEUES),
     body(QUEUED), [*COMMON, "Wait", "Announce", "Publish", "PostEvent"]),
    ("a deadline written by a step that is no queueing: no announcement", request(),
     Step(QUEUED, None, None, WAKE, transition=Transition.PROGRESSED), body(QUEUED),
     [*COMMON, "Wait", "Publish"]),
    ("still waiting (a review came): no second announcement", waited(request()),
     Step({"reviews": []}, None, None, WAKE), body(QUEUED), [*COMMON, "Wait", "Publish"]),
    ("queued with an escalation", request(), Step(QUEUED, None, None, WAKE, transition=QUEUES),
     body(QUEUED | {"escalation": {"at": "2026-11-29T18:10:00Z"}}),
     [*COMMON, "Wait", "Announce", "ArmEscalation", "Publish"]),
    ("seen again once decided (a restart)", request(), Step(), body(decided()),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("nothing yet, nothing to wake for", request(), Step(), body({}), [*COMMON, "Publish"]),
    ("break-glass approval: its review is filed", request(), Step({}, APPROVED, None),
     body(decided(reason="BreakGlassApproved")),
     [*COMMON, "StopWaiting", "CountDecision", "Publish", "FilePostIncidentReview",
      "ArmRetention", "NoteForReports"]),
    ("a reviewer asked for a rollback", replace(request(), status=decided()), Step(),
     body(decided(reviews=[{"reviewer": "bob", "decision": "Rollback"}])),
     [*COMMON, "StopWaiting", "Publish", "FileRollback", "ArmRetention", "NoteForReports"]),
    ("a rollback already filed is not filed again", replace(request(), status=decided()), Step(),
     body(decided(reviews=[{"reviewer": "bob", "decision": "Rollback"}],
                  rollback={"request": "req-1-rollback"})),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("MCP rollback carried out by the gateway: its original is marked", request(), Step(),
     body(decided(execution={"outcome": "Executed"}), execution="MCP", rollbackOf="req-0"),
     [*COMMON, "StopWaiting", "Publish", "MarkRolledBack", "ArmRetention", "NoteForReports"]),
    ("MCP rollback not carried out yet: nothing to mark", request(), Step(),
     body(decided(), execution="MCP", rollbackOf="req-0"),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("MCP action that failed: nothing to mark", request(), Step(),
     body(decided(execution={"outcome": "Failed"}), execution="MCP", rollbackOf="req-0"),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("MCP action (no rollback) executed: nothing to mark", request(), Step(),
     body(decided(execution={"outcome": "Executed"}), execution="MCP"),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("webhook executor: approved, not carried out yet", request(), Step({}, APPROVED),
     body(decided(), execution="Webhook"),
     [*COMMON, "StopWaiting", "CountDecision", "Publish", "RunWebhook", "ArmRetention",
      "NoteForReports"]),
    ("webhook executor: carried out already", request(), Step(),
     body(decided(execution={"outcome": "Executed"}), execution="Webhook"),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("webhook executor: denied", request(), Step({}, DENIED),
     body(decided("Denied", "HumanDenied"), execution="Webhook"),
     [*COMMON, "StopWaiting", "CountDecision", "Publish", "ArmRetention", "NoteForReports"]),
    ("no status, no spec at all", request(), Step(), {}, [*COMMON, "Publish"]),
    ("an escalation with no time: no timer", request(), Step(QUEUED, None, None, WAKE),
     body(QUEUED | {"escalation": {"reason": "x"}}), [*COMMON, "Wait", "Publish"]),
    ("a rollback review on a request not decided before this step: not filed yet", request(),
     Step(), body(decided(reviews=[{"reviewer": "bob", "decision": "Rollback"}])),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("a step that decides is no rollback request, whatever the reviews say",
     replace(request(), status=decided()), Step({}, APPROVED),
     body(decided(reviews=[{"reviewer": "bob", "decision": "Rollback"}])),
     [*COMMON, "StopWaiting", "CountDecision", "Publish", "ArmRetention", "NoteForReports"]),
    ("webhook executor: approved, a run under way is no outcome", request(), Step(),
     body(decided(execution={"outcome": "Running"}), execution="Webhook"),
     [*COMMON, "StopWaiting", "Publish", "RunWebhook", "ArmRetention", "NoteForReports"]),
    ("webhook executor: failed is an outcome too", request(), Step(),
     body(decided(execution={"outcome": "Failed"}), execution="Webhook"),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("webhook executor: waiting, nothing to run", request(), Step(QUEUED, None, None, WAKE),
     body(QUEUED, execution="Webhook"), [*COMMON, "Wait", "Publish"]),
    ("an Agent action approved: Handoff runs nothing", request(), Step({}, APPROVED),
     body(decided(), execution="Agent"),
     [*COMMON, "StopWaiting", "CountDecision", "Publish", "ArmRetention", "NoteForReports"]),
    ("kubernetes executor, decided: carried out (or looked at again)", request(), Step(),
     body(decided(), execution="Kubernetes"),
     [*COMMON, "StopWaiting", "Publish", "RunKubernetes", "ArmRetention", "NoteForReports"]),
    ("MCP rollback executed, a webhook spec is not MCP", request(), Step(),
     body(decided(execution={"outcome": "Executed"}), execution="Webhook", rollbackOf="req-0"),
     [*COMMON, "StopWaiting", "Publish", "ArmRetention", "NoteForReports"]),
    ("kubernetes executor while queued: a preview", request(), Step(QUEUED, None, None, WAKE, transition=QUEUES),
     body(QUEUED, execution="Kubernetes"),
     [*COMMON, "Wait", "Announce", "Publish", "RunKubernetes"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "step", "after", "expected"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_followups(
    before: RequestState, step: Step, after: dict[str, Any], expected: list[str]
) -> None:
    assert kinds(fx.followups(before, step, after)) == expected


def test_the_values_carry_what_their_handler_needs() -> None:
    effects = fx.followups(
        request(),
        Step(QUEUED, None, EVENT, WAKE, transition=QUEUES),
        body(QUEUED, execution="Kubernetes"),
    )
    assert fx.Wait(WAKE, "4") in effects
    assert fx.Announce(PENDING) in effects
    assert fx.PostEvent(EVENT) in effects
    assert fx.RunKubernetes(started_waiting=True) in effects
    later = fx.followups(
        waited(request()), Step({}, APPROVED, EVENT), body(decided(), execution="Kubernetes")
    )
    assert fx.Announce(DECIDED) in later
    assert fx.CountDecision(APPROVED) in later
    assert fx.RunKubernetes(started_waiting=False) in later


def test_the_agents_message_goes_out_before_the_event_and_the_executors() -> None:
    effects = kinds(
        fx.followups(request(), Step({}, APPROVED, EVENT), body(decided(), execution="Webhook"))
    )
    assert effects.index("Publish") < effects.index("PostEvent") < effects.index("RunWebhook")


def test_the_pending_gauge_reads_the_tier_as_written() -> None:
    untiered = {"phase": "AwaitingApproval", "deadline": "2026-11-29T18:30:00Z"}
    effects = fx.followups(request(), Step(untiered, None, None, WAKE), body(untiered))
    assert fx.Wait(WAKE, "") in effects
    effects = fx.followups(request(), Step(QUEUED, None, None, WAKE), body(QUEUED))
    assert fx.Wait(WAKE, "4") in effects


def test_names() -> None:
    assert fx.name(fx.Do.PUBLISH) == "Publish"
    assert fx.name(fx.Wait(WAKE, "1")) == "Wait"
    assert fx.name(fx.RunKubernetes(started_waiting=False)) == "RunKubernetes"

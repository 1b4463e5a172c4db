"""What follows a decision, as values: ``followups`` reads the state a step was decided from,
the step, and the status as written, and returns the effects to carry out, in order. Pure: the
controller's request handler (``controller/requests.py``) only interprets them, one handler per
effect, so "why did this happen after that write" is answered here, table by table.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from handoff.domain.announce import DECIDED, PENDING
from handoff.domain.execution import OUTCOMES
from handoff.domain.executors import KUBERNETES, MCP, WEBHOOK
from handoff.domain.model import Decision, Event, RequestState, Step
from handoff.domain.reasons import Outcome, Phase, Reason, Transition
from handoff.domain.rollback import requested_rollback


class Do(StrEnum):
    """The effects that need nothing but the request as written."""

    COUNT_FAST_APPROVALS = "CountFastApprovals"  # approvals that came in quickly, since last seen
    SPEND_BUDGET = "SpendBudget"  # an auto-approval spends from its policy's budgets, once
    STOP_WAITING = "StopWaiting"  # cancel the deadline and escalation timers; leave the gauge
    ARM_ESCALATION = "ArmEscalation"  # the escalation timer, at status.escalation.at
    PUBLISH = "Publish"  # what the status implies and is not out yet (message, audit lines)
    FILE_POST_INCIDENT_REVIEW = "FilePostIncidentReview"  # after a break-glass approval
    FILE_ROLLBACK = "FileRollback"  # a reviewer asked: file it, or restore (Kubernetes executor)
    RUN_WEBHOOK = "RunWebhook"  # post the approved action to the policy's webhook executor
    MARK_ROLLED_BACK = "MarkRolledBack"  # the MCP gateway carried out a rollback: its original
    ARM_RETENTION = "ArmRetention"  # the timer that deletes the decided request
    NOTE_FOR_REPORTS = "NoteForReports"  # its latest state, for its agent's PolicyReport


@dataclass(frozen=True)
class CountDecision:
    decision: Decision  # metrics and a log line for the decision just written


@dataclass(frozen=True)
class Wait:
    until: datetime  # wake up then (its deadline, or the next thing to look at)
    tier: str  # for the pending gauge


@dataclass(frozen=True)
class Announce:
    event: str  # Announcement.PENDING | DECIDED, to the policy's notification targets


@dataclass(frozen=True)
class PostEvent:
    event: Event


@dataclass(frozen=True)
class RunKubernetes:
    started_waiting: bool  # True: write the preview (the spec's change); else carry out an approval


Effect = Do | CountDecision | Wait | Announce | PostEvent | RunKubernetes


def name(effect: Effect) -> str:
    """An effect's name, for tables and logs."""
    return str(effect) if isinstance(effect, Do) else type(effect).__name__


def followups(before: RequestState, step: Step, after: Mapping[str, Any]) -> list[Effect]:
    """The effects of ``step``, decided from ``before``, once ``after`` (the request as written,
    or as read when there was nothing to write) is the current status."""
    status: Mapping[str, Any] = after.get("status") or {}
    spec: Mapping[str, Any] = after.get("spec") or {}
    decision: Mapping[str, Any] = status.get("decision") or {}
    effects: list[Effect] = [Do.COUNT_FAST_APPROVALS, Do.SPEND_BUDGET]
    if step.decision is not None:
        effects += [Do.STOP_WAITING, CountDecision(step.decision)]
        if before.status.get("deadline"):  # it waited for people: tell whoever listens
            effects.append(Announce(DECIDED))
    elif decision:
        effects.append(Do.STOP_WAITING)
    elif step.wake_at is not None:
        effects.append(Wait(step.wake_at, str(status.get("tier", ""))))
        if step.started_waiting or step.transition is Transition.STAGE_OPENED:
            effects.append(Announce(PENDING))  # to the reviewers of the (newly) open stage
        if (status.get("escalation") or {}).get("at"):
            effects.append(Do.ARM_ESCALATION)
    # The agent's decision message first: it must not wait for an Event, a courtesy.
    effects.append(Do.PUBLISH)
    if step.event is not None:
        effects.append(PostEvent(step.event))
    if decision.get("reason") == Reason.BREAK_GLASS_APPROVED:
        effects.append(Do.FILE_POST_INCIDENT_REVIEW)
    if step.decision is None and before.decided and requested_rollback(status) is not None:
        effects.append(Do.FILE_ROLLBACK)
    effects += _executors(step, spec, status)
    if decision:
        effects += [Do.ARM_RETENTION, Do.NOTE_FOR_REPORTS]
    return effects


def _executors(step: Step, spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[Effect]:
    """What Handoff's own executors do after this step (the agent runs an Agent action)."""
    found: list[Effect] = []
    decision = status.get("decision") or {}
    approved = decision.get("outcome") == Outcome.APPROVED
    finished = (status.get("execution") or {}).get("outcome") in OUTCOMES
    if spec.get("execution") == WEBHOOK and approved and not finished:
        found.append(Do.RUN_WEBHOOK)  # on the decision itself, or later (a restart)
    if spec.get("execution") == KUBERNETES:
        found.append(RunKubernetes(step.started_waiting))
    executed = (status.get("execution") or {}).get("outcome") == Phase.EXECUTED
    if spec.get("execution") == MCP and spec.get("rollbackOf") and executed:
        # The gateway writes only the execution (handoff.gateway): whether the operator filed
        # this rollback, and the original's RolledBack, are the rollback handler's to judge.
        found.append(Do.MARK_ROLLED_BACK)
    return found

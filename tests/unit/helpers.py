"""Builders for the pure core's inputs."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.domain.model import RequestState, Step
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.reasons import Transition
from handoff.domain.timefmt import format_time

CREATED = datetime(2026, 11, 29, 18, 0, 0, tzinfo=UTC)
NS = "agents"
AGENT = "payments-agent"
ACK_ALL = ["what", "impact", "rollback"]


def policy(name: str = "payments", **spec: Any) -> CompiledPolicy:
    body: dict[str, Any] = {
        "agents": {"serviceAccounts": [AGENT]},
        "reviewers": {"users": ["alice", "bob", "carol"]},
        "rules": [
            {"name": "reads", "actions": ["db.query", "kb.search", "report.*"], "tier": 1},
            {"name": "crm-edits", "actions": ["crm.update"], "tier": 2},
            {"name": "small-refunds", "actions": ["payments.refund"], "when": "parameters.amount <= 100", "tier": 3},
            {"name": "pii", "actions": ["customer.pii.read"], "tier": 4, "decisionWindow": "2m"},
            {"name": "money", "actions": ["payments.*"], "targets": ["stripe:*"], "tier": 4},
        ],
    }  # fmt: skip
    body.update(spec)
    return compile_policy(NS, name, body, generation=1)  # type: ignore[arg-type]


def request(
    action: str = "payments.refund",
    *,
    target: str = "stripe:charge/ch_1",
    parameters: dict[str, Any] | None = None,
    rollback: bool = False,
    agent: str = AGENT,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> RequestState:
    spec: dict[str, Any] = {
        "agent": agent,
        "action": action,
        "target": target,
        "parameters": {"amount": 2500} if parameters is None else parameters,
        "summary": "test",
    }
    if rollback:
        spec["rollback"] = {"description": "undo it", "action": "payments.charge"}
    spec.update(extra)
    body = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {
            "name": "req-1",
            "namespace": NS,
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": format_time(CREATED),
            "labels": labels or {},
        },
        "spec": spec,
    }
    return RequestState.from_json(body)  # type: ignore[arg-type]


def applied(state: RequestState, step: Step) -> RequestState:
    """The request after the operator wrote ``step``'s patch (a JSON merge patch of status)."""
    status = dict(state.status)
    status.update(step.patch or {})
    return replace(state, status=status)


def transition_of(state: RequestState, step: Step) -> Transition:
    """The transition ``step`` makes, worked out the long way from its patch and the status it
    was decided from: ``Step.transition`` must say the same."""
    if step.decision is not None:
        waited = "deadline" in state.status
        return Transition.DECIDED_AFTER_WAITING if waited else Transition.DECIDED
    if step.patch is None:
        return Transition.NONE
    if "deadline" in step.patch:
        return Transition.STARTED_WAITING
    if "stage" in step.patch and step.patch["stage"] != state.status.get("stage"):
        return Transition.STAGE_OPENED
    return Transition.PROGRESSED


def reviewed(state: RequestState, *reviews: dict[str, Any]) -> RequestState:
    status = dict(state.status)
    status["reviews"] = [*status.get("reviews", []), *reviews]
    return replace(state, status=status)


def approve(who: str, acknowledged: list[str] | None = None) -> dict[str, Any]:
    return {
        "reviewer": who,
        "decision": "Approve",
        "acknowledged": ACK_ALL if acknowledged is None else acknowledged,
    }


def deny(who: str, comment: str = "no") -> dict[str, Any]:
    return {"reviewer": who, "decision": "Deny", "comment": comment}


def at(**delta: float) -> datetime:
    return CREATED + timedelta(**delta)

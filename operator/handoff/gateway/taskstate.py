"""An MCP task (protocol revision 2025-11-25) read off the ActionRequest its task-augmented
``tools/call`` filed. Pure: the request is the task's whole state, so any gateway answers for
any task, also after a restart.

- The task id is the request's name: ``mcp-<hmac>``, an HMAC under the gateway's salt (see
  store.py), so nobody computes it; and a task belongs to the agent that filed its request (the
  same namespace, ``spec.agent``, the ``handoff.dev/requested-by`` stamp admission writes, and
  the gateway's ``handoff.dev/agent`` label). Anyone else gets the answer an unknown id gets.
- The status follows the request: ``working`` until it is decided and run, ``completed`` once
  the tool ran (Executed), ``failed`` when it was Denied (a person, an expiry, no policy) or the
  call Failed.
- The ttl follows the decision window: the task lives until its deadline (a request that
  waits for nobody has none) and then as long as its outcome is kept (the upstream's result,
  ``RESULT_TTL`` in Redis). A client's requested ttl is ignored: it can neither stretch the
  window nor outlive the result.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import mcp_types as types

from handoff.domain.execution import OUTCOMES
from handoff.domain.executors import MCP
from handoff.domain.reasons import EXECUTING, Outcome, Phase
from handoff.domain.timefmt import format_time, parse_time
from handoff.gateway.auth import Caller
from handoff.gateway.calls import refused_result
from handoff.gateway.store import RESULT_TTL

KEPT = timedelta(seconds=RESULT_TTL)  # how long an outcome stays retrievable after it is known
POLL_PERSON = 5000  # ms between polls while a person decides
POLL_SOON = 1000  # ms between polls while the operator classifies or the gateway calls
AGENT_LABEL = "handoff.dev/agent"
REQUESTED_BY = "handoff.dev/requested-by"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # an object name: no '/', no '..'


def valid_task_id(text: object) -> bool:
    return isinstance(text, str) and _NAME.fullmatch(text) is not None and ".." not in text


def owned_by(body: Mapping[str, Any], caller: Caller) -> bool:
    """Whether the request is a task of this agent: filed by it (admission's stamp, never the
    agent's word), as an MCP call, in its namespace, under the gateway's label."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    return (
        meta.get("namespace") == caller.namespace
        and spec.get("agent") == caller.agent
        and spec.get("execution") == MCP
        and (meta.get("annotations") or {}).get(REQUESTED_BY) == caller.user
        and (meta.get("labels") or {}).get(AGENT_LABEL) == caller.agent
    )


def state(body: Mapping[str, Any]) -> tuple[types.TaskStatus, str]:
    """The task's status and a sentence for its statusMessage."""
    meta, status = body["metadata"], body.get("status") or {}
    which = f"ActionRequest {meta['namespace']}/{meta['name']}"
    decision, execution = status.get("decision") or {}, status.get("execution") or {}
    outcome = execution.get("outcome")
    if outcome == Phase.EXECUTED:
        undone = " (since rolled back)" if status.get("phase") == Phase.ROLLED_BACK else ""
        return "completed", f"{which} was approved and run{undone}; tasks/result returns the result"
    if outcome == Phase.FAILED:
        said = str(execution.get("message") or "the call failed")
        return "failed", f"{which} was approved; the gateway's call Failed: {said}"[:2000]
    if decision.get("outcome") == Outcome.DENIED:  # the reason, and the reviewers' comments
        return "failed", refused_result(body)["content"][0]["text"][:2000]
    if decision.get("outcome") == Outcome.APPROVED:
        doing = "is calling the tool" if outcome == EXECUTING else "calls the tool next"
        return "working", f"{which} was approved ({decision.get('reason')}); the gateway {doing}"
    return "working", _waiting(which, status)


def _waiting(which: str, status: Mapping[str, Any]) -> str:
    phase = status.get("phase")
    if phase == Phase.AWAITING_APPROVAL:
        deadline = status.get("deadline") or "its policy's decision window"
        return (
            f"awaits a person's decision as {which} (tier {status.get('tier')}), until {deadline}"
            " at the latest; tasks/result returns the tool's result once it is approved and run"
        )
    if phase == Phase.QUEUED:
        return f"{which} is queued (its policy's limits); it waits for its turn"
    return f"filed as {which}; the operator is classifying it"


def task_of(body: Mapping[str, Any], at: datetime) -> types.Task:
    status, message = state(body)
    created = _time(body["metadata"].get("creationTimestamp")) or at
    return types.Task(
        task_id=body["metadata"]["name"],
        status=status,
        status_message=message,
        created_at=format_time(created),
        last_updated_at=format_time(_last_updated(body, created)),
        ttl=ttl_ms(body, at),
        poll_interval=_poll(body, status),
    )


def ttl_ms(body: Mapping[str, Any], at: datetime) -> int:
    """Milliseconds from the task's creation until it may be forgotten: its decision window,
    then the time its outcome is kept."""
    status = body.get("status") or {}
    created = _time(body["metadata"].get("creationTimestamp")) or at
    decision, execution = status.get("decision") or {}, status.get("execution") or {}
    if execution.get("outcome") in OUTCOMES or decision.get("outcome") == Outcome.DENIED:
        ended = _time(execution.get("at")) or _time(decision.get("at")) or at
    elif decision.get("outcome") == Outcome.APPROVED:
        ended = at  # decided; the call is under way (bounded by the executor's time-out)
    else:
        ended = _time(status.get("deadline")) or at
    return max(0, int((max(ended, created) + KEPT - created).total_seconds() * 1000))


def is_terminal(status: str) -> bool:
    return status in ("completed", "failed", "cancelled")


def _poll(body: Mapping[str, Any], status: str) -> int | None:
    if is_terminal(status):
        return None
    phase = (body.get("status") or {}).get("phase")
    return POLL_PERSON if phase == Phase.AWAITING_APPROVAL else POLL_SOON


def _last_updated(body: Mapping[str, Any], created: datetime) -> datetime:
    status = body.get("status") or {}
    times = [
        (status.get("decision") or {}).get("at"),
        (status.get("execution") or {}).get("at"),
        *[c.get("lastTransitionTime") for c in status.get("conditions") or []],
    ]
    return max([created, *[t for t in map(_time, times) if t is not None]])


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def now() -> datetime:
    return datetime.now(UTC)

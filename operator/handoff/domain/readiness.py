"""What a policy's own status says of its readiness, read the same way by the operator (after a
restart, before it has reconciled the policy itself) and by the MCP gateway's fast path."""

from collections.abc import Mapping
from typing import Any

from handoff.domain.reasons import READY, Reason


def ready_condition(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The policy's Ready condition, when the operator wrote it for the policy's generation."""
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    status = body.get("status") or {}
    if not generation or status.get("observedGeneration") != generation:
        return None
    for condition in status.get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == READY:
            return condition
    return None


def held_by_status(body: Mapping[str, Any]) -> str | None:
    """Why the status says this generation compiles but is not enforced (Ready=False for a
    reason other than its compile errors, which a compile finds again); "" when it says
    Ready=True; None when it says nothing of this generation."""
    condition = ready_condition(body)
    if condition is None:
        return None
    if condition.get("status") == "True":
        return ""
    if condition.get("reason") == Reason.COMPILE_FAILED:
        return ""
    why = str(condition.get("message") or condition.get("reason") or "not Ready")
    return why.removesuffix("; retrying")[:500]

"""What an agent reports after acting on an approval: Executed or Failed, once."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from handoff.domain.timefmt import format_time

OUTCOMES = ("Executed", "Failed")
EXECUTING = "Executing"  # the Webhook executor's mark before it sends: a restart sends again


def execution_patch(
    status: Mapping[str, Any], outcome: str, message: str, now: datetime
) -> dict[str, Any] | None:
    """The status patch for a reported outcome, or None when it must be ignored: the request
    was not approved, the outcome was already recorded, or the word is not an outcome."""
    decision = status.get("decision") or {}
    recorded = (status.get("execution") or {}).get("outcome")
    if decision.get("outcome") != "Approved" or recorded in OUTCOMES or outcome not in OUTCOMES:
        return None
    return {
        "phase": outcome,
        "execution": {"outcome": outcome, "message": message[:2000], "at": format_time(now)},
    }

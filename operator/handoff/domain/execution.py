"""What an agent reports after acting on an approval: Executed or Failed, once."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from handoff.domain.reasons import Outcome, Phase
from handoff.domain.timefmt import format_time

OUTCOMES = (Phase.EXECUTED, Phase.FAILED)


def execution_patch(
    status: Mapping[str, Any], outcome: str, message: str, now: datetime
) -> dict[str, Any] | None:
    """The status patch for a reported outcome, or None when it must be ignored: the request
    was not approved, the outcome was already recorded, or the word is not an outcome."""
    decision = status.get("decision") or {}
    recorded = (status.get("execution") or {}).get("outcome")
    if (
        decision.get("outcome") != Outcome.APPROVED
        or recorded in OUTCOMES
        or outcome not in OUTCOMES
    ):
        return None
    return {
        "phase": outcome,
        "execution": {"outcome": outcome, "message": message[:2000], "at": format_time(now)},
    }

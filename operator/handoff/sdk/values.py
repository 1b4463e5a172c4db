"""What the agent SDK hands back (a ticket, a decision) and the small helpers around them: how a
proposal is named, when a request needs no more waiting, and how a stream entry is read."""

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ticket:
    """What ``propose`` returns at once: the request, and its decision if it came quickly."""

    name: str
    uid: str
    proposal_id: str
    spec_digest: str
    tier: int | None = None
    phase: str | None = None
    deadline: str | None = None
    decision: dict[str, Any] | None = None

    @property
    def approved(self) -> bool:
        return bool(self.decision and self.decision.get("outcome") == "Approved")


@dataclass
class Decision:
    """One decision delivered to the agent, with its working state rehydrated."""

    namespace: str
    name: str
    uid: str
    action: str
    target: str
    outcome: str  # Approved | Denied
    reason: str  # AutoApproved, HumanApproved, Expired, ...
    by: list[str]
    message: str
    state: Any
    spec_digest: str
    state_ref: str
    entry_id: str = field(repr=False, default="")

    @property
    def approved(self) -> bool:
        return self.outcome == "Approved"


def request_name(action: str, namespace: str, agent: str, proposal_id: str) -> str:
    """A stable name per proposal: retrying the same proposal hits the same object."""
    slug = re.sub(r"[^a-z0-9-]+", "-", action.lower()).strip("-")[:40] or "action"
    digest = hashlib.sha256(f"{namespace}/{agent}/{proposal_id}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def settled(body: dict[str, Any]) -> bool:
    """Classified, and either decided or waiting for people (tier 3 and 4): nothing to wait for."""
    status = body.get("status") or {}
    return bool(status.get("decision") or status.get("deadline"))


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(entry: Any) -> tuple[str, dict[str, str]]:
    entry_id, fields = entry
    return as_text(entry_id), {as_text(k): as_text(v) for k, v in (fields or {}).items()}

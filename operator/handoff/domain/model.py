"""The values of the decision core: what ``decide`` reads (a ``RequestState`` with its
``Review``s, and the ``Waiting`` classification a waiting request carries) and what it returns (a
``Step``: the status patch, the ``Decision``, the ``Event``, when to look again and which
``Transition`` it makes). Frozen, and built from the API server's JSON by their ``from_*``."""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from handoff.domain.classify import RequestFacts
from handoff.domain.filing import requested_by
from handoff.domain.policyparts import ChecklistItem
from handoff.domain.reasons import CLASSIFIED, Outcome, Oversight, Reason, Transition
from handoff.domain.resources import RequestJSON, ReviewJSON
from handoff.domain.timefmt import format_time, parse_time

Condition = TypeVar("Condition", bound=Mapping[str, object])  # ConditionJSON, or as written


@dataclass(frozen=True)
class Review:
    reviewer: str
    decision: str
    acknowledged: frozenset[str] = frozenset()
    comment: str = ""
    break_glass: bool = False  # admitted on the policy's verb break-glass, not approve
    stage: str = ""  # a staged request's: the stage it reviews (admission: the open one)

    @classmethod
    def from_json(cls, raw: ReviewJSON) -> "Review":
        return cls(
            reviewer=str(raw.get("reviewer", "")),
            decision=str(raw.get("decision", "")),
            acknowledged=frozenset(raw.get("acknowledged") or ()),
            comment=str(raw.get("comment", "")),
            break_glass=raw.get("breakGlass") is True,
            stage=str(raw.get("stage") or ""),
        )


@dataclass(frozen=True)
class Waiting:
    """The classification a waiting request carries in its status, read back on later events."""

    tier: int
    oversight: Oversight
    policy: str
    rule: str | None
    deadline: datetime
    required_approvals: int
    checklist: tuple[ChecklistItem, ...]
    escalated: bool = False  # tier 2 sent to review for want of a rollback plan

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> "Waiting | None":
        if status.get("decision") or not status.get("deadline") or not status.get("policy"):
            return None
        classified = condition(status.get("conditions") or [], CLASSIFIED)
        return cls(
            tier=int(status["tier"]),
            oversight=Oversight(status["oversight"]),
            policy=str(status["policy"]),
            rule=status.get("rule"),
            deadline=parse_time(status["deadline"]),
            required_approvals=int(status.get("requiredApprovals") or 1),
            checklist=tuple(
                ChecklistItem(c["id"], c["text"]) for c in status.get("checklist") or ()
            ),
            escalated=bool(classified and classified.get("reason") == Reason.MISSING_ROLLBACK_PLAN),
        )


@dataclass(frozen=True)
class RequestState:
    """Everything ``decide`` needs to know about one ActionRequest."""

    facts: RequestFacts
    created: datetime
    # The agent's ServiceAccount user (spec.agent's), never a valid reviewer of it.
    requester: str
    generation: int = 1
    spec: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    budget_usage: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (policy, budget)
    # Who filed it (the handoff.dev/requested-by stamp admission writes): a person who filed
    # naming the agent is no valid reviewer of it either. Admission (handoff-reviews) refuses
    # their review; the operator does not count it should one get through.
    filed_by: str = ""

    @property
    def not_reviewers(self) -> frozenset[str]:
        """The users whose reviews of this request never count: its agent and who filed it."""
        return frozenset(u for u in (self.requester, self.filed_by) if u)

    @classmethod
    def from_json(cls, body: RequestJSON) -> "RequestState":
        """Read an ActionRequest as the API server returns it."""
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        namespace = str(meta.get("namespace", ""))
        agent = str(spec.get("agent", ""))
        return cls(
            facts=RequestFacts.from_spec(namespace, spec, meta.get("labels")),
            created=parse_time(meta["creationTimestamp"]),
            requester=service_account_user(namespace, agent),
            generation=int(meta.get("generation") or 1),
            spec=spec,
            status=body.get("status") or {},
            filed_by=requested_by(body),
        )

    @property
    def decided(self) -> bool:
        return bool(self.status.get("decision"))

    @property
    def reviews(self) -> tuple[Review, ...]:
        return tuple(Review.from_json(r) for r in self.status.get("reviews") or ())


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: Reason
    by: tuple[str, ...]
    at: datetime
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            "reason": str(self.reason),
            "by": list(self.by),
            "at": format_time(self.at),
            "message": self.message,
        }


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Step:
    """What to apply: a status patch (None: nothing to write), the decision, an Event, when to
    look again, and which transition this is (what follows it depends on that, not on which keys
    the patch happens to carry)."""

    patch: dict[str, Any] | None = None
    decision: Decision | None = None
    event: Event | None = None
    wake_at: datetime | None = None
    transition: Transition = Transition.NONE

    @property
    def started_waiting(self) -> bool:
        """Classified just now, and waits for people until its deadline."""
        return self.transition is Transition.STARTED_WAITING


@dataclass(frozen=True)
class Tally:
    """The reviews so far, judged against the lane."""

    approvers: tuple[str, ...]
    deniers: tuple[str, ...]
    ignored: tuple[str, ...]  # "bob: not acknowledged rollback", for the condition message
    break_glass: tuple[str, ...] = ()  # approvers who approved under break-glass


def service_account_user(namespace: str, name: str) -> str:
    """The user name Kubernetes gives a ServiceAccount's requests."""
    return f"system:serviceaccount:{namespace}:{name}"


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A digest of what was proposed: what was approved is what runs, byte for byte."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def condition(conditions: Sequence[Condition], kind: str) -> Condition | None:
    """The condition of type ``kind``, if there is one."""
    return next((c for c in conditions if c.get("type") == kind), None)


def transition_time(
    conditions: Sequence[Mapping[str, Any]], kind: str, status: str, now: str
) -> str:
    """The ``lastTransitionTime`` of a condition about to be written, as Kubernetes keeps it:
    ``now`` when the condition is new or its status changes, else when it last changed. A
    status written again unchanged is then the same bytes, which the API server does not store
    again nor send to its watchers."""
    previous = condition(conditions, kind)
    if previous is None or previous.get("status") != status:
        return now
    since = previous.get("lastTransitionTime")
    try:  # one the CRD would refuse (written by hand) is not copied into every write after it
        parse_time(str(since))
    except ValueError:
        return now
    return str(since)

"""What a request's status implies for the outside world: its audit lines and its decision message.

The status is the outbox. Whatever it says has happened is published, each item exactly once
(keyed by ``dedup``), whenever the publisher can reach Redis: after a write, after a restart,
after Redis comes back.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handoff.domain.breakglass import POST_INCIDENT_ACTION
from handoff.domain.keys import decisions_key
from handoff.domain.reasons import GrantLine, Oversight, Phase, Rollback


@dataclass(frozen=True)
class Record:
    stream: str  # the Redis stream it goes to
    dedup: str  # unique per request: "decision", "phase:Approved", "review:0"
    fields: dict[str, str]


def records(body: Mapping[str, Any], audit_stream: str, now: str = "") -> list[Record]:
    """Every record the request's current status implies, oldest first. ``now`` stamps the
    lines whose time the status does not keep (reviews)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    if not status.get("phase"):
        return []
    namespace, agent = str(meta.get("namespace", "")), str(spec.get("agent", ""))
    common = {
        "namespace": namespace,
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
        "agent": agent,
        "action": str(spec.get("action", "")),
        "target": str(spec.get("target", "")),
        "summary": str(spec.get("summary", "")),
        "tier": str(status.get("tier", "")),
        "oversight": str(status.get("oversight", "")),
        "policy": str(status.get("policy") or ""),
        "reversible": "true" if spec.get("rollback") else "false",
    }
    found: list[Record] = []
    waiting_phase = status.get("oversight") and status.get("deadline")
    if waiting_phase:
        phase = (
            Phase.QUEUED
            if status.get("oversight") == Oversight.HOTL and status.get("tier") == 3
            else Phase.AWAITING_APPROVAL
        )
        found.append(
            _audit(
                audit_stream, f"phase:{phase}", common, phase, {"deadline": str(status["deadline"])}
            )
        )
    for index, review in enumerate(status.get("reviews") or []):
        found.append(
            _audit(audit_stream, f"review:{index}", common, "Reviewed", {
                "by": str(review.get("reviewer", "")),
                "reason": str(review.get("decision", "")),
                "message": str(review.get("comment", "")),
                "at": now,
            })
        )  # fmt: skip
    decision = status.get("decision")
    if decision:
        outcome = str(decision.get("outcome", ""))
        details = {
            "reason": str(decision.get("reason", "")),
            "by": ",".join(decision.get("by") or []),
            "message": str(decision.get("message", "")),
            "at": str(decision.get("at", "")),
        }
        found.append(_audit(audit_stream, f"phase:{outcome}", common, outcome, details))
        # A post-incident review is for people only: no agent waits for its decision.
        if spec.get("action") != POST_INCIDENT_ACTION:
            found.append(
                Record(
                    decisions_key(namespace, agent),
                    "decision",
                    common | details | {
                        "outcome": outcome,
                        "stateRef": str(spec.get("stateRef", "")),
                        "specDigest": str(status.get("specDigest", "")),
                    },
                )
            )  # fmt: skip
    rollback = status.get("rollback") or {}
    if rollback.get("request"):
        extra = {"by": str(rollback.get("by", "")), "at": str(rollback.get("at", "")),
                 "message": f"rollback filed as {rollback['request']}"}  # fmt: skip
        found.append(_audit(audit_stream, "rollback:requested", common, Rollback.REQUESTED, extra))
    if rollback.get("done"):
        extra = {"at": str(rollback.get("doneAt", "")), "message": str(rollback.get("message", ""))}
        found.append(
            _audit(audit_stream, f"phase:{Phase.ROLLED_BACK}", common, Rollback.ROLLED_BACK, extra)
        )
    execution = status.get("execution")
    if execution:
        outcome = str(execution.get("outcome", ""))
        extra = {"message": str(execution.get("message", "")), "at": str(execution.get("at", ""))}
        found.append(_audit(audit_stream, f"phase:{outcome}", common, outcome, extra))
    return found


def _audit(
    stream: str, dedup: str, common: dict[str, str], event: str, extra: dict[str, str]
) -> Record:
    return Record(stream, dedup, common | {"event": event} | extra)


#: The longest reviewer-written text (target, condition, comment) an audit line carries.
GRANT_TEXT_MAX = 256


def grant_records(
    body: Mapping[str, Any], audit_stream: str, *, deleted: bool, now: str
) -> list[Record]:
    """The audit lines an ActionGrant implies, oldest first, each once per grant (``dedup``
    ``grant:<line>``, under the grant's uid): Granted (always), UsedUp (its last use taken),
    Refused (by the operator) and Revoked (``deleted``, stamped ``now``). Who granted is
    ``spec.grantedBy``, which admission checks is the creator; the reviewer-written text is
    clipped to ``GRANT_TEXT_MAX`` characters."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    used_by = [u for u in status.get("usedBy") or () if isinstance(u, Mapping)]
    used = len(used_by)
    target, until, uses = (
        _clip(spec.get("target")),
        str(spec.get("expiresAt", "")),
        spec.get("maxUses"),
    )
    common = {
        "kind": "ActionGrant",
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
        "agent": str(spec.get("agent", "")),
        "action": str(spec.get("action", "")),
        "target": target,
        "condition": _clip(spec.get("condition")),
        "comment": _clip(spec.get("comment")),
        "policy": str(spec.get("policy", "")),
        "rule": str(spec.get("rule", "")),
        "request": str(spec.get("request", "")),
        "until": until,
        "maxUses": str(uses if uses is not None else ""),
        "used": str(used),
        "grantedBy": str(spec.get("grantedBy", "")),
    }
    scope = f"{common['action']} by {common['agent']} on {target}"
    granted = f"granted {scope} until {until}, at most {common['maxUses']} uses"
    created = str(meta.get("creationTimestamp", ""))
    found = [  # who deleted a grant, the watch does not say: only Granted names a person, in "by"
        _grant_line(audit_stream, GrantLine.GRANTED, common | {"by": common["grantedBy"]}, created,
                    f"{granted} (prompted by {common['request']})"),
    ]  # fmt: skip
    if isinstance(uses, int) and used >= uses > 0:  # so used_by has a last use
        last = str(used_by[-1].get("at", ""))
        found.append(_grant_line(audit_stream, GrantLine.USED_UP, common, last,
                                 f"used up: {used} of {uses} uses taken"))  # fmt: skip
    if status.get("refused"):
        found.append(_grant_line(audit_stream, GrantLine.REFUSED, common, now,
                                 _clip(status["refused"])))  # fmt: skip
    if deleted:
        revoked = f"revoked (deleted) after {used} of {common['maxUses']} uses"
        found.append(_grant_line(audit_stream, GrantLine.REVOKED, common, now, revoked))
    return found


def _grant_line(
    stream: str, line: GrantLine, common: dict[str, str], at: str, message: str
) -> Record:
    return Record(stream, f"grant:{line}", common | {"event": str(line), "at": at,
                                                     "message": message})  # fmt: skip


def _clip(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= GRANT_TEXT_MAX else text[: GRANT_TEXT_MAX - 1] + "…"

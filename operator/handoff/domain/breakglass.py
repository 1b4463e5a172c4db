"""Break-glass: a time-boxed, annotated override that lets a named group decide requests outside a
policy's normal reviewers, during an incident.

A platform engineer annotates the policy (in Git, or with ``kubectl annotate`` when Git is the
thing that is down)::

    handoff.dev/break-glass: '{"groups": ["sre-oncall"], "until": "2026-11-29T23:00:00Z",
                               "reason": "INC-4211: payments stuck, refunds by hand"}'

While it holds, the operator binds those groups to the policy's custom verb ``break-glass``, and
a review marked ``breakGlass: true`` is admitted on that verb instead of ``approve``. Every
request decided with such a review is decided ``BreakGlassApproved`` (or denied as usual), and
leaves a post-incident review request behind, for the normal reviewers. At ``until`` the binding
is removed. A window longer than ``MAX_WINDOW`` is refused: break-glass is for hours, not for
a standing second set of reviewers.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from handoff.domain.filing import POST_INCIDENT_OF, label_value
from handoff.domain.policyparts import ChecklistItem
from handoff.domain.timefmt import format_time, parse_time

ANNOTATION = "handoff.dev/break-glass"
MAX_WINDOW = timedelta(hours=24)
POST_INCIDENT_ACTION = "handoff.post-incident-review"
POST_INCIDENT_WINDOW = timedelta(hours=168)
POST_INCIDENT_CHECKLIST = (
    ChecklistItem("why", "I read why break-glass was used and who used it"),
    ChecklistItem("what", "I checked what the approved action did"),
    ChecklistItem("follow-up", "Follow-up work (a policy change, an incident note) is filed"),
)


class BreakGlassError(ValueError):
    """The annotation cannot be used; the message says why, for the policy's condition."""


@dataclass(frozen=True)
class BreakGlass:
    groups: tuple[str, ...]
    until: datetime
    reason: str

    def active(self, now: datetime) -> bool:
        return now < self.until

    def describe(self) -> str:
        return (
            f"break-glass for {', '.join(self.groups)} until {format_time(self.until)}:"
            f" {self.reason}"
        )


def parse_break_glass(annotations: dict[str, str] | None, now: datetime) -> BreakGlass | None:
    """The policy's break-glass grant, or None when it has none. Raises BreakGlassError for an
    annotation that is malformed or asks for too long a window."""
    text = (annotations or {}).get(ANNOTATION)
    if text is None:
        return None
    try:
        raw: Any = json.loads(text)
    except ValueError as e:
        raise BreakGlassError(f"{ANNOTATION} is not JSON: {e}") from e
    if not isinstance(raw, dict):
        raise BreakGlassError(f"{ANNOTATION} must be a JSON object with groups, until, reason")
    groups = raw.get("groups")
    if (
        not isinstance(groups, list)
        or not groups
        or not all(isinstance(g, str) and g.strip() for g in groups)
    ):
        raise BreakGlassError(f"{ANNOTATION}: groups must be a non-empty list of group names")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise BreakGlassError(f"{ANNOTATION}: reason must say why (an incident, a ticket)")
    try:
        until = parse_time(str(raw.get("until", "")))
    except ValueError as e:
        raise BreakGlassError(
            f"{ANNOTATION}: until must be an RFC 3339 time such as 2026-11-29T23:00:00Z"
        ) from e
    if until - now > MAX_WINDOW:
        raise BreakGlassError(
            f"{ANNOTATION}: until is more than {int(MAX_WINDOW.total_seconds() // 3600)}h away;"
            " break-glass is time-boxed (file a policy change for a standing reviewer group)"
        )
    return BreakGlass(tuple(sorted(set(groups))), until, reason.strip()[:512])


def post_incident_request(
    body: dict[str, Any], approvers: tuple[str, ...], reason: str
) -> dict[str, Any]:
    """The ActionRequest the operator files after a break-glass approval: a tier 4 request for
    the policy's normal reviewers to look back at what was done. Nothing runs when it is
    approved; approving it records that the review took place."""
    meta, spec = body["metadata"], body["spec"]
    name = f"{meta['name'][:240]}-pir"
    return {
        "apiVersion": body["apiVersion"],
        "kind": "ActionRequest",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {POST_INCIDENT_OF: label_value(meta["name"])},
        },
        "spec": {
            "agent": spec["agent"],
            "action": POST_INCIDENT_ACTION,
            "target": f"actionrequest/{meta['name']}",
            "summary": (
                f"Post-incident review: {', '.join(approvers)} approved {spec['action']} on"
                f" {spec.get('target', '')} under break-glass"
            )[:512],
            "reasoning": f"Break-glass reason: {reason}"[:4096],
            "blastRadius": "none: a record to review; nothing runs when it is approved",
            "parameters": {
                "request": meta["name"],
                "action": spec["action"],
                "approvedBy": list(approvers),
                "breakGlassReason": reason[:512],
            },
        },
    }

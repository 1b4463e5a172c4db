"""The handoff package as a message: what, why, blast radius, rollback, deadline, and a link.

Pure: the notifier renders these and the webhook adapter sends them.
"""

from collections.abc import Mapping
from typing import Any

from handoff.domain.reasons import Announcement

PENDING = Announcement.PENDING
ESCALATED = Announcement.ESCALATED
DECIDED = Announcement.DECIDED


def package(body: Mapping[str, Any], event: str, console_url: str | None) -> dict[str, Any]:
    """The JSON document a generic webhook receives."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    link = None
    if console_url:
        link = f"{console_url.rstrip('/')}/requests/{meta.get('namespace')}/{meta.get('name')}"
    return {
        "event": event,
        "request": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        },
        "agent": spec.get("agent"),
        "action": spec.get("action"),
        "target": spec.get("target"),
        "what": spec.get("summary"),
        "why": spec.get("reasoning"),
        "blastRadius": spec.get("blastRadius"),
        "rollback": (spec.get("rollback") or {}).get("description"),
        "tier": status.get("tier"),
        "oversight": status.get("oversight"),
        "policy": status.get("policy"),
        "rule": status.get("rule"),
        "deadline": status.get("deadline"),
        "requiredApprovals": status.get("requiredApprovals"),
        "checklist": [item.get("text") for item in status.get("checklist") or []],
        "escalateTo": (status.get("escalation") or {}).get("to") or [],
        **_stage(status),
        "decision": status.get("decision"),
        "link": link,
    }


def _stage(status: Mapping[str, Any]) -> dict[str, Any]:
    """A staged request's open stage and who reviews it: announcements go to them."""
    stage = status.get("stage")
    if not stage:
        return {}
    stages = status.get("stages") or ()
    current: Mapping[str, Any] = next((s for s in stages if s.get("name") == stage), {})
    return {"stage": stage, "stageReviewers": current.get("reviewers") or {}}


def slack(document: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message. Agent-written text goes in plain_text blocks (Slack
    does not render markup there), so it cannot ping channels or fake links."""
    event = document["event"]
    headline = {
        PENDING: f"Tier {document['tier']} request waits for review",
        ESCALATED: "Still undecided: escalated"
        + (" to " + ", ".join(document["escalateTo"]) if document["escalateTo"] else ""),
        DECIDED: f"Decided: {(document.get('decision') or {}).get('outcome', '')}",
    }.get(event, event)

    def field(title: str, value: Any) -> dict[str, Any]:
        return {
            "type": "plain_text",
            "text": f"{title}: {value if value not in (None, '') else '(not given)'}"[:2000],
        }

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "section", "fields": [
            field("What", document["what"]), field("Why", document["why"]),
            field("Blast radius", document["blastRadius"]), field("Rollback", document["rollback"]),
            field("Agent", document["agent"]), field("Deadline", document["deadline"]),
        ]},
    ]  # fmt: skip
    if document.get("link"):
        blocks.append({
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Review"},
                          "url": document["link"]}],
        })  # fmt: skip
    return {"text": _escape(f"{headline}: {document['what']}")[:3000], "blocks": blocks}


def _escape(text: str) -> str:
    """Slack's own escaping for mrkdwn text: no <!channel>, no <url|fake links>."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

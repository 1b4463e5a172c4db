"""The handoff package in Slack's Block Kit: the interactive message and the two modals. Pure.

Every string an agent wrote goes into ``plain_text`` objects, which Slack never reads as markup,
after ``untrusted.visible`` (the package's fields already are) and ``plain``: so no
``<!channel>``, no ``<http://x|fake link>``, no ``*bold*`` and no control characters. The
message's fallback ``text`` carries no agent text at all (the headline and the request's
name), is escaped the way Slack asks (``&``, ``<``, ``>``) and is sent with ``mrkdwn: false``.
"""

import re
from typing import Any

from handoff.domain.timefmt import format_time
from handoff.review.package import Package

APPROVE, DENY = "handoff.approve", "handoff.deny"  # action_id of the buttons, callback_id of views
ACK_BLOCK, COMMENT_BLOCK = "ack", "comment"
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def units(text: str) -> int:
    """Length in UTF-16 code units: the strictest way Slack may count (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """At most ``limit`` UTF-16 units, an ellipsis at the end when cut (never half an emoji)."""
    if units(text) <= limit:
        return text
    kept, used = [], 1
    for char in text:
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            break
        kept.append(char)
    return "".join(kept) + "\u2026"


def plain(text: object, limit: int) -> dict[str, Any]:
    """A plain_text object: never rendered as markup; control characters as visible escapes."""
    shown = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return {"type": "plain_text", "text": clip(shown, limit) if shown.strip() else "-",
            "emoji": False}  # fmt: skip


def escape(text: str) -> str:
    """Slack's escaping for mrkdwn and ``text``: no <!channel>, no <url|fake links>."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def reference(package: Package) -> str:
    """What a button carries: the request, by namespace, name and uid (checked on every click)."""
    return f"{package.namespace}/{package.name}/{package.uid}"


BARE = (
    "The agent's text could not be shown in Slack; read it in the console or with"
    " kubectl handoff show before deciding."
)


def _fields(package: Package, *, bare: bool = False) -> list[dict[str, Any]]:
    """The package as section fields; ``bare``: only what the operator wrote (no agent text)."""
    deadline = format_time(package.deadline) if package.deadline else "-"
    rule = f"{package.policy} / {package.rule}" if package.rule else package.policy
    agents = [
        ("What", package.summary), ("Why", package.reasoning),
        ("Blast radius", package.blast_radius), ("Rollback", package.rollback or "(none given)"),
        ("Action", f"{package.action} on {package.target}"), ("Agent", package.agent),
    ]  # fmt: skip
    pairs = [] if bare else agents
    pairs += [
        ("Tier", f"{package.tier} ({package.oversight})"), ("Policy / rule", rule),
        ("Deadline", deadline), ("Request", f"{package.namespace}/{package.name}"),
    ]  # fmt: skip
    return [plain(f"{title}: {value}", 2000) for title, value in pairs]


def outcome(package: Package) -> str:
    """How and by whom it was decided, in a few words."""
    decision = package.decision or {}
    by = ", ".join(str(b) for b in decision.get("by") or [])
    how = f"{decision.get('outcome', 'Decided')} ({decision.get('reason', '')})"
    return f"{how} by {by}" if by else how


def message(
    package: Package, link: str | None = None, *, bare: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The notification's fallback text and blocks: with Approve/Deny while it waits; after the
    decision, how and by whom, and no buttons. ``bare``: without the agent's text, for when
    Slack refused the full message (a request must never go unannounced for its text)."""
    if package.decided:
        headline = f"Decided: {outcome(package)}"
    else:
        headline = f"Tier {package.tier} request waits for review"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(headline, 150)},
        {"type": "section", "fields": _fields(package, bare=bare)[:10]},
    ]
    if bare:
        blocks.append({"type": "section", "text": plain(BARE, 3000)})
    buttons: list[dict[str, Any]] = []
    if package.waiting:
        value = reference(package)
        buttons += [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": plain("Approve", 75)},
            {"type": "button", "action_id": DENY, "style": "danger", "value": value,
             "text": plain("Deny", 75)},
        ]  # fmt: skip
    if link:
        buttons.append({"type": "button", "action_id": "handoff.open", "url": link[:3000],
                        "text": plain("Open in the console", 75)})  # fmt: skip
    if buttons:
        blocks.append({"type": "actions", "block_id": "handoff", "elements": buttons})
    # The fallback (notifications, screen readers) names the request, and no agent text at all.
    text = escape(plain(f"{headline}: {package.namespace}/{package.name}", 3000)["text"])
    return text, blocks


def modal(package: Package, decision: str, private_metadata: str) -> dict[str, Any]:
    """Approve: the checklist as checkboxes and an optional comment. Deny: a required reason.
    ``private_metadata`` (the sealed facts of review/slackseal.py) comes back with the answer."""
    approving = decision == "Approve"
    blocks: list[dict[str, Any]] = [{"type": "section", "fields": _fields(package)[:10]}]
    if approving and package.checklist:
        options = [
            {"value": item[:150], "text": plain(item, 75), "description": plain(text, 75)}
            for item, text in package.checklist
        ]
        blocks.append({
            "type": "input", "block_id": ACK_BLOCK, "optional": True,
            "label": plain("Checklist: tick every item", 2000),
            "element": {"type": "checkboxes", "action_id": ACK_BLOCK, "options": options[:10]},
        })  # fmt: skip
    blocks.append({
        "type": "input", "block_id": COMMENT_BLOCK, "optional": approving,
        "label": plain("Comment" if approving else "Why do you deny it?", 2000),
        "element": {"type": "plain_text_input", "action_id": COMMENT_BLOCK, "multiline": True,
                    "max_length": 2000},
    })  # fmt: skip
    return {
        "type": "modal",
        "callback_id": APPROVE if approving else DENY,
        "private_metadata": private_metadata,
        "title": plain("Approve request" if approving else "Deny request", 24),
        "submit": plain("Approve" if approving else "Deny", 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    }

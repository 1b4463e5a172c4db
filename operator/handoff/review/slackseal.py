"""A modal's facts, sealed into its ``private_metadata``: which request, for whom, which decision,
at which stage (none: "") and when it opened. Pure.

Slack returns ``private_metadata`` unchanged with the submission, so the facts travel with the
modal and any console replica can check them: nothing is kept in one process's memory. The seal
is an HMAC-SHA256 with a key derived from the app's signing secret (under its own label, so a
seal is never a valid request signature nor the reverse). A modal opened for request A cannot be
submitted for B, by another user, as the other decision, or earlier than the lane's
``minReviewSeconds`` after it opened.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

_LABEL = b"handoff-slack-modal-v1"
_KEYS = ("ref", "channel", "ts", "user", "decision", "stage", "opened")


def _mac(secret: str, facts: str) -> str:
    key = hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()
    return hmac.new(key, facts.encode(), hashlib.sha256).hexdigest()


def seal(secret: str, facts: Mapping[str, Any]) -> str:
    """``facts`` (ref, channel, ts, user, decision, stage: strings, stage "" for a request
    without approval stages; opened: Unix seconds) with a MAC."""
    body = json.dumps({k: facts[k] for k in _KEYS}, sort_keys=True, separators=(",", ":"))
    return json.dumps({"facts": body, "mac": _mac(secret, body)}, separators=(",", ":"))


def unseal(secret: str, metadata: str) -> dict[str, Any] | None:
    """The facts of a modal this console sealed, or None when anything was changed."""
    try:
        outer = json.loads(metadata)
        body, mac = outer["facts"], outer["mac"]
        if not (isinstance(body, str) and isinstance(mac, str)) or not hmac.compare_digest(
            _mac(secret, body).encode(), mac.encode("utf-8", "replace")
        ):
            return None
        facts = json.loads(body)
    except (ValueError, TypeError, KeyError):
        return None
    return facts if _shaped(facts) else None


def _shaped(facts: object) -> bool:
    return (
        isinstance(facts, dict)
        and set(facts) == set(_KEYS)
        and all(isinstance(facts[k], str) for k in _KEYS if k != "opened")
        and isinstance(facts["opened"], int | float)
        and not isinstance(facts["opened"], bool)
    )

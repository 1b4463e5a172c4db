"""Slack: the request signature every callback carries, and the few Web API calls Handoff makes.

The signing secret and the bot token come from Kubernetes Secrets (through the environment);
neither is ever logged, and Slack's answers are reduced to their ``error`` code.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

API = "https://slack.com/api"
MAX_AGE = 300  # seconds: an older (or future) timestamp is a replay
MAX_BODY = 256 * 1024  # Slack's interactivity payloads are far smaller


class SlackError(Exception):
    """A Web API call failed; the message is Slack's error code or the transport's, no secrets.
    ``code`` is Slack's own error code when Slack answered (``invalid_blocks``, ...)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SignatureError(Exception):
    """The callback is not from Slack (or is a replay): refused before its body is parsed."""


def check_timestamp(timestamp: str | None, now: float) -> int:
    """Slack's ``X-Slack-Request-Timestamp``: whole seconds, within 5 minutes of now."""
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("the request carries no valid Slack timestamp")
    when = int(timestamp)
    if abs(now - when) > MAX_AGE:
        raise SignatureError("the request's timestamp is more than 5 minutes away: a replay?")
    return when


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:timestamp:body`` with the app's signing secret."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def check_signature(secret: str, timestamp: str, body: bytes, signature: str | None) -> None:
    expected = sign(secret, timestamp, body)
    if not signature or not hmac.compare_digest(
        expected.encode(), signature.encode("utf-8", "replace")
    ):
        raise SignatureError("the request's Slack signature does not match")


@dataclass
class SlackApi:
    """chat.postMessage, chat.update, chat.postEphemeral and views.open with the bot token."""

    token: str
    base_url: str = API
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # never the token
        return f"SlackApi({self.base_url!r})"

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json; charset=utf-8",
        }
        try:
            async with self._session.post(
                f"{self.base_url.rstrip('/')}/{method}", data=json.dumps(body), headers=headers
            ) as response:
                if response.status >= 400:
                    raise SlackError(f"{method}: HTTP {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise SlackError(f"{method}: cannot reach Slack ({type(e).__name__})") from e
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = str((answer.get("error") if isinstance(answer, dict) else None) or "not ok")
            raise SlackError(f"{method}: {error[:100]}", error[:100])
        return answer

    async def post_message(self, channel: str, text: str, blocks: list[Any]) -> tuple[str, str]:
        """Post; the (channel, ts) that chat.update needs later."""
        answer = await self.call(
            "chat.postMessage",
            {"channel": channel, "text": text, "blocks": blocks, "mrkdwn": False},
        )
        return str(answer.get("channel") or channel), str(answer.get("ts") or "")

    async def update(self, channel: str, ts: str, text: str, blocks: list[Any]) -> None:
        await self.call(
            "chat.update",
            {"channel": channel, "ts": ts, "text": text, "blocks": blocks, "mrkdwn": False},
        )

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        """``text`` is shown as plain text (a block), and escaped in the fallback."""
        shown = text if len(text) <= 3000 else text[:2999] + "\u2026"
        fallback = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        block = {"type": "section", "text": {"type": "plain_text", "text": shown, "emoji": False}}
        await self.call(
            "chat.postEphemeral",
            {"channel": channel, "user": user, "text": fallback, "blocks": [block]},
        )

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        await self.call("views.open", {"trigger_id": trigger_id, "view": view})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""Announcements through the Handoff Slack app (notification format ``SlackApp``).

A waiting request is posted to the target's channel with Approve and Deny buttons (the console's
``/slack/interactivity`` answers them); the message's channel and ts are kept in Redis beside
the notification marks, so that when the request is decided (by anyone, anywhere, or by expiry)
the message is updated to say how and by whom, without its buttons, even after a restart.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from handoff.adapters.outbox import Outbox
from handoff.adapters.slack import SlackApi, SlackError
from handoff.domain.announce import DECIDED, PENDING
from handoff.domain.policy import NotificationTarget
from handoff.review.package import build
from handoff.review.slackblocks import message

log = logging.getLogger("handoff.operator")
# Slack's answers when the blocks themselves are refused: sent again without the agent's text.
REFUSED_BLOCKS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long",
                            "invalid_arguments"})  # fmt: skip


@dataclass
class SlackApp:
    api: SlackApi
    outbox: Outbox | None
    console_url: str | None = None
    _posted: dict[tuple[str, str], str] = field(default_factory=dict)  # (uid, target) -> "ch ts"

    async def announce(self, target: NotificationTarget, body: dict[str, Any], event: str) -> None:
        """Post (Pending) or update (Decided); SlackError or OutboxError when that failed."""
        meta = body["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        package = build(body)
        link = None
        if self.console_url:
            link = f"{self.console_url.rstrip('/')}/requests/{namespace}/{meta['name']}"
        text, blocks = message(package, link)
        key = f"slack:{target.name}"
        if event == PENDING and package.waiting and target.channel:
            try:
                channel, ts = await self.api.post_message(target.channel, text, blocks)
            except SlackError as e:
                if e.code not in REFUSED_BLOCKS:
                    raise
                log.warning("Slack refused %s's message (%s): posted without the agent's text",
                            meta["name"], e.code)  # fmt: skip
                text, blocks = message(package, link, bare=True)
                channel, ts = await self.api.post_message(target.channel, text, blocks)
            self._posted[(uid, target.name)] = f"{channel} {ts}"
            if self.outbox is not None:
                await self.outbox.remember(namespace, uid, key, f"{channel} {ts}")
        elif event == DECIDED:
            where = self._posted.get((uid, target.name))
            if where is None and self.outbox is not None:
                where = await self.outbox.recall(namespace, uid, key)
            if not where:
                return  # never posted (it did not wait, or was filed before the target)
            channel, _, ts = where.partition(" ")
            try:
                await self.api.update(channel, ts, text, blocks)
            except SlackError as e:
                if e.code not in REFUSED_BLOCKS:
                    raise
                await self.api.update(channel, ts, *message(package, link, bare=True))
            self._posted.pop((uid, target.name), None)

    async def close(self) -> None:
        await self.api.close()


__all__ = ["SlackApp", "SlackError"]

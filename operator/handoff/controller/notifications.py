"""Announcing waiting requests to the policy's notification targets, without blocking anything.

Each announcement runs as its own task: resolve the target's URL and HMAC key from Secrets,
render the handoff package, send with retries, then mark it sent (send first, mark after: a
crash between the two repeats an announcement, never loses one; receivers dedup on the
``X-Handoff-Delivery`` header).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handoff.adapters import metrics
from handoff.adapters.kube import KubeApi, KubeError
from handoff.adapters.outbox import Outbox, OutboxError
from handoff.adapters.slack import SlackError
from handoff.adapters.webhooks import Delivery, DeliveryError, WebhookSender
from handoff.controller.concurrency import TaskSet
from handoff.controller.secrets import secret_value
from handoff.controller.slackapp import SlackApp
from handoff.domain.announce import DECIDED, package, slack
from handoff.domain.policy import CompiledPolicy, NotificationTarget
from handoff.domain.timefmt import format_time

log = logging.getLogger("handoff.operator")


@dataclass
class TargetHealth:
    delivered: int = 0
    failed: int = 0
    last_error: str = ""
    last_failure: datetime | None = None

    def to_json(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "delivered": self.delivered, "failed": self.failed}
        if self.last_error:
            out["lastError"] = self.last_error
        if self.last_failure:
            out["lastFailureTime"] = format_time(self.last_failure.replace(microsecond=0))
        return out


@dataclass
class Notifier:
    api: KubeApi
    outbox: Outbox | None
    clock: Callable[[], datetime]
    console_url: str | None = None
    sender: WebhookSender = field(default_factory=WebhookSender)
    on_health: Callable[[str, str], None] | None = None  # (namespace, policy) changed
    slack_app: SlackApp | None = None  # format SlackApp: the bot token's Web API client
    health: dict[tuple[str, str, str], TargetHealth] = field(default_factory=dict)
    _sent: set[tuple[str, str, str]] = field(default_factory=set)
    _tasks: TaskSet = field(default_factory=TaskSet)

    def announce(self, policy: CompiledPolicy, body: dict[str, Any], event: str) -> None:
        for target in policy.notifications:
            # A SlackApp message is updated when its request is decided, whatever the events.
            if event in target.events or (target.format == "SlackApp" and event == DECIDED):
                self._tasks.spawn(self._deliver(policy, target, body, event))

    def forget(self, uid: str) -> None:
        self._sent = {s for s in self._sent if s[0] != uid}

    def policy_health(self, namespace: str, policy: str) -> list[dict[str, Any]]:
        return [
            health.to_json(target)
            for (ns, name, target), health in sorted(self.health.items())
            if (ns, name) == (namespace, policy)
        ]

    async def close(self) -> None:
        self._tasks.cancel_all()
        await self.sender.close()
        if self.slack_app is not None:
            await self.slack_app.close()

    async def _deliver(
        self, policy: CompiledPolicy, target: NotificationTarget, body: dict[str, Any], event: str
    ) -> None:
        meta = body["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        stage = (body.get("status") or {}).get("stage")
        mark = f"{event}:{stage}" if stage else event  # a staged request's, once per stage
        key = f"notify:{target.name}:{mark}"
        if (uid, target.name, mark) in self._sent:
            return
        health = self.health.setdefault((namespace, policy.name, target.name), TargetHealth())
        try:
            if self.outbox is not None and await self.outbox.marked(namespace, uid, key):
                self._sent.add((uid, target.name, mark))
                return
            if target.format == "SlackApp":
                if self.slack_app is None:
                    raise SlackError(
                        "the operator has no Slack bot token (HANDOFF_SLACK_BOT_TOKEN)"
                    )
                await self.slack_app.announce(target, body, event)
            else:
                await self._post(namespace, f"{uid}:{mark}", target, body, event)
        except (DeliveryError, KubeError, OutboxError, SlackError) as e:
            health.failed += 1
            health.last_error = f"{event} for {meta['name']}: {e}"[:1000]
            health.last_failure = self.clock()
            self._count(namespace, policy.name, target.name, "failed")
            log.warning("notification %s to %s failed: %s", event, target.name, e)
            self._changed(namespace, policy.name)
            return
        self._sent.add((uid, target.name, mark))
        first_success_after_failure = health.failed and not health.delivered
        health.delivered += 1
        self._count(namespace, policy.name, target.name, "delivered")
        if first_success_after_failure or health.delivered == 1:
            self._changed(namespace, policy.name)
        if self.outbox is not None:
            try:
                await self.outbox.mark(namespace, uid, key)
            except OutboxError as e:
                log.warning("could not mark %s sent (it may be sent again): %s", key, e)

    async def _post(
        self,
        namespace: str,
        delivery: str,
        target: NotificationTarget,
        body: dict[str, Any],
        event: str,
    ) -> None:
        url = target.url or await secret_value(self.api, namespace, target.url_secret)
        hmac_key = (
            (await secret_value(self.api, namespace, target.hmac_secret)).encode()
            if target.hmac_secret
            else None
        )
        document = package(body, event, self.console_url)
        payload = slack(document) if target.format == "Slack" else document
        await self.sender.send(Delivery(url, payload, delivery, hmac_key))

    @staticmethod
    def _count(namespace: str, policy: str, target: str, result: str) -> None:
        metrics.NOTIFICATIONS.labels(
            namespace=namespace, policy=policy, target=target, result=result
        ).inc()

    def _changed(self, namespace: str, policy: str) -> None:
        if self.on_health is not None:
            self.on_health(namespace, policy)

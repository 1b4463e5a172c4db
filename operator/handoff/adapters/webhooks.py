"""Announcing requests over HTTP: generic JSON webhooks and Slack-compatible incoming webhooks.

Each delivery is signed when the target has an HMAC secret: ``X-Handoff-Signature: sha256=<hex>``
over ``<X-Handoff-Timestamp>.<body>``, so a receiver can refuse forgeries and replays. Failures
are retried with backoff and never block a decision.
"""

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


class DeliveryError(Exception):
    pass


@dataclass(frozen=True)
class Delivery:
    url: str
    payload: dict[str, Any]
    delivery_id: str  # the same on every retry: receivers dedup on it
    hmac_key: bytes | None = None


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    def __init__(self, attempts: int = 6, first_delay: float = 0.5, timeout: float = 10) -> None:
        self.attempts = attempts
        self.first_delay = first_delay
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, delivery: Delivery) -> int:
        """POST until a 2xx answer; return how many attempts it took, or raise DeliveryError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        delay = self.first_delay
        last = ""
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "handoff-operator",
                "X-Handoff-Delivery": delivery.delivery_id,
                "X-Handoff-Timestamp": timestamp,
            }
            if delivery.hmac_key:
                headers["X-Handoff-Signature"] = signature(delivery.hmac_key, timestamp, body)
            try:
                async with self._session.post(delivery.url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        return attempt
                    last = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                last = type(e).__name__
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        raise DeliveryError(f"{last} after {self.attempts} attempts")

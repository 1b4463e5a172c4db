"""Kubernetes Events on requests (and on grants): why an Event was posted is the Step or the
handler that handed it here; this module only posts it. An Event is a courtesy: a failure to
post one is logged and never blocks a decision."""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from handoff import GROUP, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path
from handoff.controller.concurrency import Lull, TaskSet
from handoff.domain.decide import Event
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import format_time
from handoff.review.untrusted import inline

log = logging.getLogger("handoff.operator")
MESSAGE_LIMIT = 1024  # characters of an Event's message


class Events:
    def __init__(
        self, api: KubeApi, clock: Callable[[], datetime], at_once: int, lull: Lull | None = None
    ) -> None:
        self.api = api
        self.clock = clock
        self._slots = asyncio.Semaphore(at_once)  # Events posted at once, beside the work
        self._lull = lull  # deadlines being decided go first (post_soon)
        self._posting = TaskSet()
        self._instance = socket.gethostname()

    def post_soon(
        self, body: RequestJSON, event: Event, kind: str = "ActionRequest",
        related: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Post a transition's Event beside the work: it does not hold a reconcile slot, so a
        slow Event write never delays the next request's decision; and it waits while deadlines
        are being decided (``Lull``), so that a wave of them is written first. Its time is the
        transition's. (``kind``: Handoff's kind ``body`` is, an ActionGrant for the Events about
        grants; ``related``: the Event's secondary object, the agent a grant was for.)"""
        record = self._record(body, event, kind, related)
        self._posting.spawn(self._post(record, self._slots, self._lull))

    async def post(
        self, body: RequestJSON, event: Event, kind: str = "ActionRequest",
        related: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Post now: for the handlers that post an Event in the course of their own work."""
        await self._post(self._record(body, event, kind, related))

    async def _post(
        self, record: dict[str, Any], slots: asyncio.Semaphore | None = None,
        lull: Lull | None = None,
    ) -> None:  # fmt: skip
        about = record["involvedObject"]
        try:
            if lull is not None:
                await lull.wait()
            async with slots or contextlib.nullcontext():
                await self.api.create(resource_path("", "v1", "events", about["namespace"]), record)
        except KubeError as e:
            log.warning("could not post event for %s/%s: %s", about["namespace"], about["name"], e)

    def _record(
        self, body: RequestJSON, event: Event, kind: str, related: Mapping[str, str] | None
    ) -> dict[str, Any]:
        meta = body["metadata"]
        now = format_time(self.clock())
        record: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": event.reason,
            # Messages quote agent-written text (targets, summaries) and kubectl prints them as
            # they are: every control and bidi character is shown as a visible escape.
            "message": inline(event.message)[:MESSAGE_LIMIT],
            "type": event.type,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "handoff-operator"},
            "reportingComponent": "handoff.dev/operator",
            "reportingInstance": self._instance,
        }
        if related is not None:
            record["related"] = dict(related)
        return record

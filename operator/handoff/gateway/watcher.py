"""Approved MCP requests that nobody waits on (the client gave up, the gateway restarted, a
reviewer asked for a rollback) are carried out here: a list, then a watch, of every request;
each approved one with ``execution: MCP`` and no recorded outcome goes to the executor."""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from handoff.adapters.kube import KubeApi, KubeError, NotFound, resource_path
from handoff.domain.execution import OUTCOMES
from handoff.domain.executors import MCP
from handoff.domain.reasons import EXECUTING
from handoff.gateway.execute import Executor

log = logging.getLogger(__name__)
PATH = "/apis/handoff.dev/v1alpha1/actionrequests"


class Watcher:
    def __init__(self, api: KubeApi, executor: Executor) -> None:
        self.api = api
        self.executor = executor
        self._running: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        while True:
            try:
                listing = await self.api.get(PATH)
                for body in listing.get("items") or []:
                    self._consider(body)
                version = listing["metadata"]["resourceVersion"]
                while True:
                    async for event in self.api.watch(PATH, {"resourceVersion": version}, 300):
                        body = event["object"]
                        if event["type"] == "ERROR":
                            raise KubeError(int(body.get("code") or 0), "the watch expired")
                        version = body["metadata"]["resourceVersion"]
                        if event["type"] != "DELETED":
                            self._consider(body)
            except (KubeError, KeyError) as e:
                log.warning("requests: %s; listing again", e)
                await asyncio.sleep(1)

    def _consider(self, body: Mapping[str, Any]) -> None:
        status = body.get("status") or {}
        if (body.get("spec") or {}).get("execution") != MCP:
            return
        if (status.get("decision") or {}).get("outcome") != "Approved":
            return
        if (status.get("execution") or {}).get("outcome") in OUTCOMES:
            return
        task = asyncio.create_task(self._execute(body))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(self, body: Mapping[str, Any]) -> None:
        """Run it; while another gateway's Executing mark holds it, look again once the mark
        would be stale (a gateway that died mid-call leaves no event behind to wake us)."""
        meta = body["metadata"]
        path = resource_path(
            "handoff.dev", "v1alpha1", "actionrequests", meta["namespace"], meta["name"]
        )
        try:
            while True:
                body = await self.executor.run(body)
                execution = (body.get("status") or {}).get("execution") or {}
                if execution.get("outcome") != EXECUTING:
                    return
                await asyncio.sleep(self.executor.stale.total_seconds() + 1)
                body = await self.api.get(path)
        except NotFound:
            return
        except Exception:
            log.exception("executing %s", meta.get("name"))

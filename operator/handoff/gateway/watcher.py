"""Approved MCP requests that nobody waits on (the client gave up, the gateway restarted, a
reviewer asked for a rollback) are carried out here: a list, then a watch, of every request;
each approved one with ``execution: MCP`` and no recorded outcome goes to the executor."""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from handoff.adapters.kube import KubeApi, NotFound, resource_path
from handoff.domain.execution import OUTCOMES
from handoff.domain.executors import MCP
from handoff.domain.reasons import Outcome
from handoff.gateway.execute import Executor
from handoff.gateway.fastpath import Decisions
from handoff.gateway.listwatch import ListWatch
from handoff.gateway.store import ALIVE

log = logging.getLogger(__name__)
PATH = "/apis/handoff.dev/v1alpha1/actionrequests"


class Watcher:
    def __init__(
        self, api: KubeApi, executor: Executor, decisions: Decisions | None = None
    ) -> None:
        self.api = api
        self.executor = executor
        self.decisions = decisions or Decisions()  # fast paths of this gateway: they record
        self._running: dict[str, asyncio.Task[Any]] = {}
        self.loop = ListWatch(api, PATH, "requests", on_list=self._listed, on_event=self._event)
        self.look_again = ALIVE + 1  # seconds: by then a gone owner's claim can be taken over

    async def run(self) -> None:
        """List, then watch, for ever (``listwatch.ListWatch``)."""
        await self.loop.run()

    def _listed(self, items: Sequence[Mapping[str, Any]]) -> None:
        for body in items:
            self._consider(body)

    def _event(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind != "DELETED" and not self.decisions.seen(body):
            self._consider(body)

    def _consider(self, body: Mapping[str, Any]) -> None:
        status = body.get("status") or {}
        if (body.get("spec") or {}).get("execution") != MCP:
            return
        if (status.get("decision") or {}).get("outcome") != Outcome.APPROVED:
            return
        uid = body["metadata"]["uid"]
        if (status.get("execution") or {}).get("outcome") in OUTCOMES:
            waiting = self._running.pop(uid, None)  # recorded: stop looking again later
            if waiting is not None:
                waiting.cancel()
            return
        if uid in self._running:
            return
        task = asyncio.create_task(self._execute(body))
        self._running[uid] = task
        task.add_done_callback(lambda t: self._forget(uid, t))

    def _forget(self, uid: str, task: "asyncio.Task[Any]") -> None:
        if self._running.get(uid) is task:
            del self._running[uid]

    async def _execute(self, body: Mapping[str, Any]) -> None:
        """Run it; while another gateway's claim holds it, look again once that gateway's
        heartbeat would have expired if it died (a gateway that died mid-call leaves no event
        behind to wake us); a record of the outcome arriving meanwhile ends the wait."""
        meta = body["metadata"]
        path = resource_path(
            "handoff.dev", "v1alpha1", "actionrequests", meta["namespace"], meta["name"]
        )
        try:
            while True:
                body = await self.executor.run(body)
                status = body.get("status") or {}
                if (status.get("execution") or {}).get("outcome") in OUTCOMES:
                    return
                if (status.get("decision") or {}).get("outcome") != Outcome.APPROVED:
                    return
                await asyncio.sleep(self.look_again)
                body = await self.api.get(path)
        except NotFound:
            return
        except Exception:
            log.exception("executing %s", meta.get("name"))

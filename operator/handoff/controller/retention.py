"""Retention: a decided request is deleted ``--retention`` after its last transition (decision,
execution or rollback), and only once its whole audit record is out and its agent's PolicyReport
shows it. "Why did this not expire?": ``retire`` says which of those it is still waiting for."""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from handoff.adapters.kube import KubeApi, NotFound
from handoff.controller.publishing import Publisher
from handoff.controller.reports import REPORT_EVERY, ReportWriter
from handoff.controller.scheduler import RETAIN, DeadlineScheduler
from handoff.controller.status import request_path
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import parse_time

log = logging.getLogger("handoff.operator")


def last_transition(body: RequestJSON) -> datetime | None:
    """When a decided request last changed (what retention counts from); None if undecided."""
    status = body.get("status") or {}
    if not status.get("decision"):
        return None
    times = [status["decision"].get("at"), (status.get("execution") or {}).get("at"),
             (status.get("rollback") or {}).get("doneAt")]  # fmt: skip
    return max(parse_time(t) for t in times if t)


@dataclass
class Retention:
    api: KubeApi
    clock: Callable[[], datetime]
    period: timedelta | None  # None: requests are kept
    scheduler: DeadlineScheduler
    publisher: Publisher
    reports: ReportWriter

    def arm(self, body: RequestJSON) -> None:
        last = last_transition(body)
        if self.period is None or last is None:
            return
        meta = body["metadata"]
        self.scheduler.arm((RETAIN, meta["namespace"], meta["name"]), last + self.period)

    async def retire(self, body: RequestJSON) -> None:
        """Delete a request past its retention, only once its whole audit record is out."""
        meta = body["metadata"]
        if not await self.publisher.publish(body):
            return  # retried by the publisher; retention comes round again after that
        agent = str(body["spec"].get("agent", ""))
        decided_at = parse_time(
            (body.get("status") or {}).get("decision", {}).get("at") or meta["creationTimestamp"]
        )
        if not self.reports.shows(meta["namespace"], agent, decided_at):
            self.reports.stale(meta["namespace"], agent)  # its report must show it before it goes
            later = self.clock() + REPORT_EVERY * 2
            self.scheduler.arm((RETAIN, meta["namespace"], meta["name"]), later)
            return
        options = {"apiVersion": "v1", "kind": "DeleteOptions",
                   "preconditions": {"uid": meta["uid"]}}  # fmt: skip
        with contextlib.suppress(NotFound):
            await self.api.request("DELETE", request_path(meta["namespace"], meta["name"]), options)
        log.info(
            "%s/%s deleted after its retention period; its audit record stays",
            meta["namespace"],
            meta["name"],
        )

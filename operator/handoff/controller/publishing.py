"""Publishing what a request's status implies (the status is the outbox): the agent's decision
message and the audit lines to Redis, each exactly once, and each audit line once to the JSON
audit log (logger ``handoff.audit``) with a stable ``id`` (the request's uid and the line's dedup
key). "Why was this published twice?": only here, and only when Redis lost what it had
acknowledged (``follow_redis``), which the dedup marks that survived then mostly absorb.

The JSON log is not re-logged by a restart: with Redis, a line is logged when Redis says it is
new, or when its ``logged:`` mark is missing (a crash between the two); without Redis, once per
life of the process (the ``id`` lets a shipper drop what a restart logged again).
"""

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import KubeError, resource_path
from handoff.adapters.outbox import Outbox, OutboxError
from handoff.controller.reports import ReportWriter
from handoff.controller.scheduler import DeadlineScheduler
from handoff.controller.status import StatusWriter
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.records import Record, records
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import format_time, parse_time

log = logging.getLogger("handoff.operator")
audit_log = logging.getLogger("handoff.audit")  # one JSON line per transition, for log shipping
EPOCH_EVERY = timedelta(seconds=2)  # how often the Redis server's run_id is compared
LOGGED = "logged:"  # the outbox mark of an audit line written to the JSON log


def audit_id(uid: str, record: Record) -> str:
    """A line's stable id: the same transition of the same request has the same id."""
    return f"{uid}/{record.dedup}"


@dataclass
class Publisher:
    status: StatusWriter
    clock: Callable[[], datetime]
    outbox: Outbox | None
    reports: ReportWriter
    scheduler: DeadlineScheduler
    owns: Callable[[str], bool]  # this shard's namespaces
    _published: dict[str, set[str]] = field(default_factory=dict)  # uid -> keys out: _keep

    async def publish(self, body: RequestJSON, *, first: bool = False) -> bool:
        """Publish what the status implies and was not published yet: to Redis when configured,
        and always as a JSON line on the audit log. True when all of it is out; else a retry is
        armed. ``first``: this status is the request's first (the pass that wrote it found none),
        so nothing of it can be out yet and Redis is not asked what is (the publication's own
        dedup still holds if something was)."""
        meta = body["metadata"]
        done = self._published.get(meta["uid"])
        try:
            found = records(body, AUDIT_STREAM, format_time(self.clock()))
            if done is None:
                done = set() if first else await self._already_out(body, found)
            todo = [record for record in found if record.dedup not in done]
            fresh_ones = [True] * len(todo)
            if self.outbox is not None and todo:  # every record in one round trip
                fresh_ones = await self.outbox.publish_all(meta["namespace"], meta["uid"], todo)
            for record, fresh in zip(todo, fresh_ones, strict=True):
                at = record.fields.get("at") if record.dedup == "decision" else None
                if self.outbox is not None and fresh and at:
                    lag = self.clock() - parse_time(at)
                    metrics.OUTBOX_LAG_SECONDS.observe(max(lag.total_seconds(), 0.0))
                if record.stream == AUDIT_STREAM:
                    await self._log(body, record, fresh)
                    self.reports.stale(meta["namespace"], str(body["spec"].get("agent", "")))
                done.add(record.dedup)
        except OutboxError as e:
            metrics.PUBLISH_ERRORS.inc()
            log.warning("publishing %s/%s: %s; retrying", meta["namespace"], meta["name"], e)
            self.scheduler.retry_soon(meta["namespace"], meta["name"])
            if done is not None:
                self._published[meta["uid"]] = done
            return False
        self._keep(body, done)
        return True

    async def _already_out(self, body: RequestJSON, found: list[Record]) -> set[str]:
        """The first pass over a request in this process (after a start, or a decided request,
        whose marks are not kept): what Redis already holds, asked in one round trip rather
        than two per record."""
        if self.outbox is None or not found:
            return set()
        meta = body["metadata"]
        audit = [record for record in found if record.stream == AUDIT_STREAM]
        if audit:  # its report is rewritten from what this life of the operator noted
            self.reports.stale(meta["namespace"], str(body["spec"].get("agent", "")))
        keys = [record.dedup for record in found] + [LOGGED + record.dedup for record in audit]
        have = await self.outbox.present(meta["namespace"], meta["uid"], keys)
        return {record.dedup for record in found if record.dedup in have
                and (record.stream != AUDIT_STREAM or LOGGED + record.dedup in have)}  # fmt: skip

    def _keep(self, body: RequestJSON, done: set[str]) -> None:
        """What is out is remembered while a request waits; with Redis a decided request keeps
        nothing here (its next pass, if any, asks Redis once), so a history of decided requests
        costs no memory."""
        uid = body["metadata"]["uid"]
        if self.outbox is not None and (body.get("status") or {}).get("decision"):
            self._published.pop(uid, None)
        else:
            self._published[uid] = done

    async def _log(self, body: RequestJSON, record: Record, fresh: bool) -> None:
        meta = body["metadata"]
        mark = LOGGED + record.dedup
        if (
            self.outbox is not None
            and not fresh
            and await self.outbox.marked(meta["namespace"], meta["uid"], mark)
        ):
            return  # logged before, by this replica's last life or another replica
        line = record.fields | {"id": audit_id(meta["uid"], record)}
        audit_log.info(json.dumps(line, sort_keys=True))
        if self.outbox is not None:
            await self.outbox.mark(meta["namespace"], meta["uid"], mark)

    async def forget(self, namespace: str, name: str, uid: str) -> None:
        """A deleted request: drop what is remembered as published, here and in Redis."""
        self._published.pop(uid, None)
        if self.outbox is not None:
            try:
                await self.outbox.forget(namespace, uid)
            except OutboxError as e:
                log.warning("could not drop publication marks of %s/%s: %s", namespace, name, e)

    async def follow_redis(self) -> None:
        """Redis that restarted or failed over may have lost acknowledged writes (the last
        second, with appendfsync everysec; more, on a lagging replica), and what this replica
        remembers as published would then be wrong. When the server's run_id changes, publish
        again whatever the statuses imply: the dedup marks that survived drop what is there."""
        assert self.outbox is not None
        seen = ""
        while True:
            await asyncio.sleep(EPOCH_EVERY.total_seconds())
            try:
                epoch = await self.outbox.epoch()
            except OutboxError:
                continue
            if seen and epoch != seen:
                log.warning("Redis restarted or failed over: publishing every decision again")
                await self.republish_all()
            seen = epoch

    async def republish_all(self) -> None:
        try:
            listing = await self.status.api.get(resource_path(GROUP, VERSION, REQUESTS))
        except KubeError as e:
            log.warning("listing requests to publish them again: %s", e)
            return
        self._published.clear()
        for body in listing.get("items") or []:
            if self.owns(body["metadata"]["namespace"]) and (body.get("status") or {}).get("phase"):
                await self.publish(body)

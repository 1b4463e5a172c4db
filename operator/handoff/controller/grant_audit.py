"""Audit lines about the ActionGrants themselves: granted, used up, refused, revoked.

Every watch event on a grant passes through here (``handlers.grant_event``). What its body
implies (``domain/records.grant_records``) goes to the audit stream, each line once per grant
(the outbox's dedup field, keyed by the grant's uid, as a request's lines are keyed by its uid),
and once to the JSON audit log (logger ``handoff.audit``) with a stable ``id``:
``<uid>/grant:<line>``.
A Revoked line is only seen on the DELETED event: a grant deleted while no operator ran
leaves no Revoked line (its last state is in the API server's audit log). The Revoked line is
also posted as a Kubernetes Event on the (gone) grant, once, its agent's ServiceAccount as the
Event's ``related`` object, so ``kubectl handoff log`` can tell it with a reviewer's own rights
(and ``--agent`` keeps it by that field, never by the message's text); the other lines it reads
from the grants themselves.
"""

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from handoff.adapters.outbox import Outbox, OutboxError
from handoff.controller.events import Events
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.model import Event
from handoff.domain.reasons import GrantLine
from handoff.domain.records import Record, grant_records
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import format_time

log = logging.getLogger("handoff.operator")
audit_log = logging.getLogger("handoff.audit")
LOGGED = "logged:"  # the outbox mark of a line written to the JSON log (as in publishing.py)
RETRY = timedelta(seconds=2)


class GrantAuditor:
    def __init__(
        self, outbox: Outbox | None, clock: Callable[[], datetime], events: Events | None = None
    ) -> None:
        self.outbox, self.clock, self.events = outbox, clock, events
        self._logged: set[str] = set()  # ids logged by this process (without Redis, the only dedup)
        self._retries: set[asyncio.Task[None]] = set()

    async def seen(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        """Publish what ``body`` (a grant, as the watch saw it) implies and is not out yet;
        when Redis cannot be reached, try again in 2s with the same body."""
        meta = body.get("metadata") or {}
        namespace, uid = str(meta.get("namespace", "")), str(meta.get("uid", ""))
        found = grant_records(body, AUDIT_STREAM, deleted=deleted, now=format_time(self.clock()))
        try:
            await self._publish(namespace, uid, found, body)
        except OutboxError as e:
            log.warning("audit of actiongrant %s/%s: %s; retrying", namespace, meta.get("name"), e)
            loop = asyncio.get_running_loop()
            loop.call_later(RETRY.total_seconds(), self._again, body, deleted)

    def _again(self, body: Mapping[str, Any], deleted: bool) -> None:
        task = asyncio.create_task(self.seen(body, deleted=deleted))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _publish(
        self, namespace: str, uid: str, found: list[Record], body: Mapping[str, Any]
    ) -> None:
        have: set[str] = set()
        if self.outbox is not None:
            keys = [r.dedup for r in found] + [LOGGED + r.dedup for r in found]
            have = await self.outbox.present(namespace, uid, keys)
        for record in found:
            line_id = f"{uid}/{record.dedup}"
            if self.outbox is None:
                if line_id not in self._logged:
                    self._log(record, line_id)
                    self._revoked(record, body)
                continue
            if record.dedup not in have:
                await self.outbox.publish(namespace, uid, record)
                self._revoked(record, body)
            if LOGGED + record.dedup not in have:
                self._log(record, line_id)
                await self.outbox.mark(namespace, uid, LOGGED + record.dedup)

    def _revoked(self, record: Record, body: Mapping[str, Any]) -> None:
        """The Revoked line as an Event on the grant, in one sentence that names what it was."""
        fields = record.fields
        if self.events is None or fields.get("event") != GrantLine.REVOKED:
            return
        message = (
            f"{fields['grantedBy']}'s grant of {fields['action']} by {fields['agent']} on"
            f" {fields['target']} (rule {fields['rule']} of policy {fields['policy']}, prompted by"
            f" {fields['request']}) was {fields['message']}"
        )
        event = Event("Normal", GrantLine.REVOKED, message)
        agent = {"apiVersion": "v1", "kind": "ServiceAccount",
                 "namespace": fields["namespace"], "name": fields["agent"]}  # fmt: skip
        self.events.post_soon(
            cast(RequestJSON, dict(body)), event, kind="ActionGrant", related=agent
        )

    def _log(self, record: Record, line_id: str) -> None:
        audit_log.info(json.dumps(record.fields | {"id": line_id}, sort_keys=True))
        self._logged.add(line_id)

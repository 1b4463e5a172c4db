"""What agents report after acting, read from their own outcome streams: hostile input.

An agent may append anything to its stream: no fields, bytes that are not UTF-8, megabytes, a
name with a path in it, another agent's request. The operator has one reader for every agent,
so it survives any entry: each is judged (``parse``) before anything is done with it, and one
that can never be recorded is rejected: a log line, ``handoff_rejected_outcomes_total``, a
Warning Event on the request when it names one, and then it is acknowledged (and deleted). An
entry that could not be recorded for a passing reason (Redis or the API server away, a request
that kept changing) stays pending and is read again later, with a growing wait.

Entries are delivered to a consumer named after the operator's host. When leadership moves, what
the former leader was given and never acknowledged stays pending under its name: every
``CLAIM_EVERY`` seconds the reader claims (XAUTOCLAIM) entries that nobody acknowledged for
``CLAIM_IDLE`` seconds, whichever consumer holds them, and records them (once: recording is
resourceVersion-guarded, and an entry is deleted when acknowledged).
"""

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import KubeApi, KubeError, NotFound, resource_path
from handoff.adapters.outbox import OutboxError, RedisOutcomes
from handoff.controller.tasks import describe
from handoff.domain.decide import Event
from handoff.domain.execution import OUTCOMES
from handoff.domain.reasons import Reason
from handoff.domain.resources import RequestJSON

log = logging.getLogger("handoff.operator")

NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a DNS-1123 subdomain: nothing else
UID = re.compile(r"[0-9A-Za-z-]{1,64}")
FIELD_LIMIT = 16 * 1024  # bytes of one field (the SDK writes at most 2,000 characters)
KEY_LIMIT = 64  # bytes of a field's name
RETRY_FIRST, RETRY_MOST = 2.0, 60.0  # seconds before a pending entry is read again
UNEXPECTED_ATTEMPTS = 3  # an entry that raises what nothing expected: rejected after this many
# Entries idle this long are claimed from whichever consumer holds them (a former leader): longer
# than this reader leaves its own pending entries between two reads (RETRY_MOST).
CLAIM_IDLE, CLAIM_EVERY = RETRY_MOST + 15.0, 15.0


@dataclass(frozen=True)
class Reported:
    """One well-formed entry: an agent says what happened when it acted on a request."""

    namespace: str
    agent: str
    name: str
    uid: str
    outcome: str
    message: str


class Rejected(Exception):
    """An entry that can never be recorded; ``name`` is the request it names (a valid name), or
    empty."""

    def __init__(self, problem: str, name: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.name = name


def shown(text: str, limit: int = 64) -> str:
    """Agent-written text as it may appear in a log line or an Event: quoted, escaped, short."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def parse(stream: str, fields: Mapping[bytes, bytes]) -> Reported:
    """Judge one entry of ``stream`` (``handoff:outcomes:{namespace}:{agent}``)."""
    _, _, namespace, agent = stream.split(":", 3)
    if not fields:
        raise Rejected("the entry has no fields")
    text: dict[str, str] = {}
    problems: list[str] = []
    for raw_key, raw_value in fields.items():
        try:
            key = bytes(raw_key).decode()
        except (UnicodeDecodeError, TypeError):
            problems.append("a field's name is not UTF-8 text")
            continue
        if len(raw_key) > KEY_LIMIT:
            problems.append(f"a field's name is {len(raw_key)} bytes, over {KEY_LIMIT}")
        elif len(raw_value) > FIELD_LIMIT:
            problems.append(f"field {shown(key)} is {len(raw_value)} bytes, over {FIELD_LIMIT}")
        else:
            try:
                text[key] = bytes(raw_value).decode()
            except (UnicodeDecodeError, TypeError):
                problems.append(f"field {shown(key)} is not UTF-8 text")
    name = text.get("name", "")
    named = name if NAME.fullmatch(name) else ""
    if problems:
        raise Rejected(problems[0], named)
    if not name:
        raise Rejected("the entry names no request (no field 'name')")
    if not named:
        raise Rejected(f"{shown(name)} is not a request's name")
    uid = text.get("uid", "")
    if not UID.fullmatch(uid):
        raise Rejected(f"{shown(uid)} is not a request's uid", named)
    outcome = text.get("outcome", "")
    if outcome not in OUTCOMES:
        raise Rejected(f"outcome {shown(outcome)} is neither Executed nor Failed", named)
    return Reported(namespace, agent, name, uid, outcome, text.get("message", ""))


def passing(error: KubeError | OutboxError) -> bool:
    """Whether trying again later may succeed: Redis, or the API server away, busy or racing."""
    return isinstance(error, OutboxError) or error.status in (0, 409, 429) or error.status >= 500


class OutcomeReader:
    """Reads every governed agent's outcome stream and records or rejects each entry."""

    def __init__(
        self,
        reader: RedisOutcomes,
        streams: Callable[[], list[str]],
        record: Callable[[Reported], Awaitable[None]],
        notice: Callable[[str, str, str, str], Awaitable[None]],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        claim_idle: float = CLAIM_IDLE,
    ) -> None:
        self.reader, self.streams, self.record, self.notice = reader, streams, record, notice
        self.monotonic = monotonic
        self.claim_idle = claim_idle
        self.attempts: dict[tuple[str, str], int] = {}  # (stream, id) -> failed attempts
        self.due: dict[str, float] = {}  # stream -> when to read its pending entries again
        self.claim_due = 0.0  # when to claim what other consumers left pending

    async def run(self) -> None:
        while True:
            await self.step()

    async def step(self) -> None:
        """One read of every stream (and, when due, a claim of what others left pending)."""
        streams = self.streams()
        now = self.monotonic()
        for stream in [s for s, at in self.due.items() if at <= now]:
            del self.due[stream]
            self.reader.reread(stream)
        try:
            entries = await self.reader.read(streams)
            if now >= self.claim_due:
                seen = {(stream, entry_id) for stream, entry_id, _ in entries}
                claimed = await self.reader.claim(streams, int(self.claim_idle * 1000))
                entries += [e for e in claimed if (e[0], e[1]) not in seen]
                self.claim_due = now + CLAIM_EVERY
        except OutboxError as e:
            log.warning("reading outcomes: %s; retrying in 2s", e)
            await asyncio.sleep(2)
            return
        if not streams:
            await asyncio.sleep(1)
        for stream, entry_id, fields in entries:
            await self.handle(stream, entry_id, fields)

    async def handle(self, stream: str, entry_id: str, fields: Mapping[bytes, bytes]) -> None:
        """Record one entry, or reject it, or leave it for later. Never raises."""
        name = ""
        try:
            reported = parse(stream, fields)
            name = reported.name
            await self.record(reported)
        except Rejected as e:
            await self.reject(stream, entry_id, e)
            return
        except (KubeError, OutboxError) as e:
            if not passing(e):
                await self.reject(stream, entry_id, Rejected(f"it was refused: {e}", name))
                return
            self.later(stream, entry_id, f"{e}")
            return
        except (
            Exception
        ) as e:  # a bug, or input nothing foresaw: counted, tried again, then dropped
            metrics.HANDLER_EXCEPTIONS.labels(handler="outcome").inc()
            count = self.attempts.get((stream, entry_id), 0) + 1
            log.exception("outcome %s in %s: unexpected %s", entry_id, stream, describe(e))
            if count < UNEXPECTED_ATTEMPTS:
                self.later(stream, entry_id, describe(e))
                return
            problem = f"recording it failed {count} times ({describe(e)})"
            await self.reject(stream, entry_id, Rejected(problem, name))
            return
        await self.acknowledge(stream, entry_id)

    def later(self, stream: str, entry_id: str, why: str) -> None:
        count = self.attempts[(stream, entry_id)] = self.attempts.get((stream, entry_id), 0) + 1
        wait = min(RETRY_FIRST * (1 << min(count - 1, 8)), RETRY_MOST)
        log.warning("outcome %s in %s: %s; will retry in %.0fs", entry_id, stream, why, wait)
        self.due[stream] = min(self.due.get(stream, float("inf")), self.monotonic() + wait)

    async def reject(self, stream: str, entry_id: str, rejected: Rejected) -> None:
        _, _, namespace, agent = stream.split(":", 3)
        metrics.REJECTED_OUTCOMES.labels(namespace=namespace).inc()
        log.warning("dropped outcome %s in %s: %s", entry_id, stream, rejected.problem)
        if rejected.name:
            try:
                await self.notice(namespace, agent, rejected.name, rejected.problem)
            except Exception as e:  # an Event is a courtesy: never let it keep the entry
                log.warning("could not post an event about outcome %s: %s", entry_id, describe(e))
        await self.acknowledge(stream, entry_id)

    async def acknowledge(self, stream: str, entry_id: str) -> None:
        try:
            await self.reader.ack(stream, entry_id)
        except OutboxError as e:  # it stays pending: recording it again changes nothing
            self.later(stream, entry_id, f"acknowledging: {e}")
            return
        self.attempts.pop((stream, entry_id), None)


class Notices:
    """Warning Events on requests an agent's rejected entries name, once per request and
    problem, and at most ``PER_REQUEST`` on one request: a problem quotes the agent's own text
    (an outcome, a field's name), so an agent that varies it is counted and logged, not posted
    again (each Event is written with the operator's rights)."""

    REMEMBERED = 4096
    PER_REQUEST = 16

    def __init__(self, api: KubeApi, post: Callable[[RequestJSON, Event], Awaitable[None]]) -> None:
        self.api, self.post = api, post
        self.posted: set[tuple[str, str]] = set()
        self.counts: dict[str, int] = {}  # request uid -> Events posted on it

    async def __call__(self, namespace: str, agent: str, name: str, problem: str) -> None:
        try:
            body = await self.api.get(resource_path(GROUP, VERSION, REQUESTS, namespace, name))
        except NotFound:
            return
        uid = str(body["metadata"].get("uid"))
        key = (uid, problem)
        if key in self.posted or self.counts.get(uid, 0) >= self.PER_REQUEST:
            return
        if len(self.posted) >= self.REMEMBERED:
            self.posted.clear()
            self.counts.clear()
        self.posted.add(key)
        self.counts[uid] = self.counts.get(uid, 0) + 1
        text = f"{agent} wrote an outcome for this request that cannot be recorded: {problem}"
        await self.post(body, Event("Warning", Reason.REJECTED_OUTCOME, text + "; dropped"))

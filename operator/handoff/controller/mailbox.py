"""Each request's newest watch event, taken off kopf's hands at once.

kopf starts a worker per object as soon as the watch delivers an event for it, and that worker
holds the parsed event, its body views, loggers and causes, and the coroutine of its handler,
until the handler returns. The operator decides at most ``CONCURRENCY`` requests at once
(``requests.py``), so when requests come faster than it decides (a flood of filings, a start's
listing) every request waiting for a slot held all of that: the resident set after filing
10,000 pending requests was the peak of that backlog (docs/performance.md, issue 21), and
Python keeps the memory of a peak.

The handler now leaves each request's event here and returns; kopf's worker goes
(``settings.queueing.idle_timeout``) and takes its objects with it. What waits is a slim copy of
the body (no managedFields, which nothing the operator decides reads) under the request's key,
and a few drain tasks hand the keys to the reconciler in the order they came. A request's newer
event replaces the one still waiting (a reconcile reads the whole status, and a pass over an
older version would only meet a 409 and read the newer one); a request being reconciled is not
handed out again until that pass ends, so one request is never reconciled twice at once.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

log = logging.getLogger("handoff.operator")
DRAINS = 32  # tasks handing keys out: twice the reconciler's slots, so that slots never idle


class Mailbox:
    def __init__(self, handle: Callable[[Any, Any], Awaitable[None]], drains: int = DRAINS) -> None:
        self._handle = handle
        self._drains = drains
        self._newest: dict[Hashable, Any] = {}
        self._order: deque[Hashable] = deque()  # keys with an event waiting, in arrival order
        self._busy: set[Hashable] = set()  # keys whose event a drain is handling
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = 0  # drains that have not left their loop (a task's end comes later)

    def __len__(self) -> int:
        """Events waiting for a drain."""
        return len(self._newest)

    def put(self, key: Hashable, item: Any) -> None:
        """Leave ``key``'s newest event: it replaces one still waiting, or waits its turn."""
        waiting = key in self._newest
        self._newest[key] = item
        if not waiting and key not in self._busy:
            self._order.append(key)
            if self._draining < self._drains:
                self._draining += 1
                task = asyncio.create_task(self._drain())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._order:
                key = self._order.popleft()
                item = self._newest.pop(key)
                self._busy.add(key)
                try:
                    await self._handle(key, item)
                except Exception:  # the handler counts and retries its own; this is a last guard
                    log.exception("handling the event of %s failed", key)
                finally:
                    self._busy.discard(key)
                    if key in self._newest:  # a newer event came meanwhile: its turn, in order
                        self._order.append(key)
        finally:
            self._draining -= 1

    async def idle(self) -> None:
        """Until every event left here has been handled (tests, and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

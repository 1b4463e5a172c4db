"""One timer for every deadline: a heap of absolute times, not a kopf timer per object.

Deadlines are absolute times in each request's status, so a restarted operator re-arms them all
from its first listing and expires at once what passed while it was down.
"""

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timedelta

from handoff.adapters import metrics
from handoff.controller.concurrency import TaskSet

log = logging.getLogger(__name__)

# A request's timers are keyed (kind, namespace, name).
DEADLINE = "deadline"  # decide again: its deadline, or a retry
READ_AHEAD = "read-ahead"  # read a waiting request a moment before its deadline falls
ESCALATE = "escalate"  # announce it again, to the escalation targets
RETAIN = "retain"  # delete it: its retention period passed
RETRY = timedelta(seconds=2)


class DeadlineScheduler:
    def __init__(
        self,
        fire: Callable[[Hashable], Awaitable[None]],
        clock: Callable[[], datetime],
        retry_after: float = 1.0,  # seconds before a failed handler runs again
    ) -> None:
        self._fire = fire
        self._clock = clock
        self._retry_after = retry_after
        self._due: dict[Hashable, datetime] = {}
        self._heap: list[tuple[datetime, int, Hashable]] = []
        self._counter = 0
        self._changed = asyncio.Event()
        self._tasks = TaskSet()
        self._failures: dict[Hashable, int] = {}  # keys whose handler raised, times in a row

    def __len__(self) -> int:
        return len(self._due)

    def arm(self, key: Hashable, when: datetime) -> None:
        if self._due.get(key) == when:
            return
        self._due[key] = when
        self._counter += 1
        sooner = not self._heap or when < self._heap[0][0]
        heapq.heappush(self._heap, (when, self._counter, key))
        if sooner:  # else the loop already wakes up in time (a start arms 10,000 retentions)
            self._changed.set()
        if len(self._heap) > 2 * len(self._due) + 1024:  # re-armed many times
            self._compact()

    def due(self, key: Hashable) -> datetime | None:
        """When ``key`` fires next, if it is armed."""
        return self._due.get(key)

    def retry_soon(self, namespace: str, name: str, delay: timedelta = RETRY) -> None:
        """Decide the request again a little later (something it needed was away)."""
        self.arm((DEADLINE, namespace, name), self._clock() + delay)

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)  # its heap entry is skipped when it comes up
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()

    def _compact(self) -> None:
        """Drop the heap entries of cancelled and re-armed keys: a request decided long before
        its deadline (a day's window, say) would otherwise keep one until then."""
        self._heap = [(when, n, key) for n, (key, when) in enumerate(self._due.items())]
        heapq.heapify(self._heap)
        self._counter = len(self._heap)
        self._changed.set()

    async def run(self) -> None:
        while True:
            self._changed.clear()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # cancelled or re-armed since
                del self._due[key]
                self._tasks.spawn(self._run_one(key))
            timeout = None
            if self._heap:
                timeout = max((self._heap[0][0] - self._clock()).total_seconds(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _run_one(self, key: Hashable) -> None:
        try:
            await self._fire(key)
        except Exception:
            # Counted; then tried again, retry_after later the first time, doubling up to
            # 5 minutes.
            metrics.HANDLER_EXCEPTIONS.labels(handler="timer").inc()
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self._retry_after * (1 << min(failures - 1, 16)), 300.0)
            if failures == 1:
                log.exception("deadline handler for %s failed; retrying in %gs", key, delay)
            else:
                log.error("deadline handler for %s failed %d times; retrying in %gs",
                          key, failures, delay)  # fmt: skip
            await asyncio.sleep(delay)
            self.arm(key, self._clock())
        else:
            self._failures.pop(key, None)

"""A bound on how fast one agent reads its tasks: ``tasks/get``, ``tasks/list``, ``tasks/cancel``
and the first read of ``tasks/result`` each cost the API server a read made with the gateway's
own identity (a GET, or a LIST of the namespace's requests by label). Those reads share the
gateway's API priority-and-fairness flow with everything the gateway does for every agent
(recording executions, following policies); one agent polling in a loop made them queue.

Each agent has a token bucket per gateway replica: ``rate`` reads a second, up to ``2 * rate``
at once (a client honouring ``pollInterval``, 1 to 5 s, polls far below it). Past it the read
gets a JSON-RPC error saying so and when to try again; other agents are not affected. With N
replicas an agent reads at most N times the rate.
"""

import time
from collections.abc import Callable

from mcp.shared.exceptions import MCPError

from handoff.domain.reasons import Gateway
from handoff.gateway import metrics
from handoff.gateway.holds import TOO_MANY  # the same JSON-RPC error: retry later

__all__ = ["DEFAULT", "TOO_MANY", "Rates"]
DEFAULT = 20  # task reads a second per agent
_MAX_AGENTS = 4096  # buckets kept; full ones are forgotten first (they are worth nothing)


class Rates:
    def __init__(self, rate: int = DEFAULT, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1:
            raise ValueError("the bound on task reads per agent is at least 1 a second")
        self.limit = rate  # reads a second
        self.rate = float(rate)
        self.burst = 2.0 * rate
        self.clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # tokens, at

    def take(self, namespace: str, agent: str, what: str) -> None:
        """One read for the agent now; MCPError past its rate."""
        now = self.clock()
        key = (namespace, agent)
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            metrics.REFUSED.labels(reason=Gateway.TOO_MANY_READS).inc()
            wait = (1.0 - tokens) / self.rate
            raise MCPError(
                TOO_MANY,
                f"{agent} reads its tasks faster than this gateway allows one agent"
                f" ({self.limit} tasks/get, tasks/list, tasks/cancel or tasks/result a second):"
                f" this {what} was refused. Wait {wait:.1f} s and poll at the task's"
                " pollInterval",
                {"reason": Gateway.TOO_MANY_READS, "limit": self.limit,
                 "retryAfterSeconds": round(wait, 3)},
            )  # fmt: skip
        if len(self._buckets) >= _MAX_AGENTS and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1.0, now)

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold nothing an agent could have spent)."""
        refilled = [k for k, (tokens, at) in self._buckets.items()
                    if tokens + (now - at) * self.rate >= self.burst]  # fmt: skip
        for key in refilled or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]

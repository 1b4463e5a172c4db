"""A bound on what one agent holds open on a gateway: its ``tools/call`` requests (each may
wait up to ``--wait`` seconds for a decision) and its ``tasks/result`` requests that wait for
an outcome (until a person decides or the window closes). Each holds a connection, a watch on
the API server and memory; without a bound, one agent holding thousands starved every other
agent of this replica.

Past the bound a request gets a JSON-RPC error saying so, and nothing is filed; the ones it
holds go on. The count is this replica's (nothing is kept across replicas): with N replicas
behind a Service an agent holds at most N times the bound.
"""

import contextlib
from collections.abc import Iterator

from mcp.shared.exceptions import MCPError

from handoff.domain.reasons import Gateway
from handoff.gateway import metrics

TOO_MANY = -32000  # JSON-RPC's implementation-defined server error: retry later
DEFAULT = 16  # held at once per agent: parallel tool calls, and a few tasks waited on


class Holds:
    def __init__(self, limit: int = DEFAULT) -> None:
        if limit < 1:
            raise ValueError("the bound on held calls per agent is at least 1")
        self.limit = limit
        self._held: dict[tuple[str, str], int] = {}

    def held(self, namespace: str, agent: str) -> int:
        return self._held.get((namespace, agent), 0)

    @contextlib.contextmanager
    def hold(self, namespace: str, agent: str, what: str) -> Iterator[None]:
        """One held request of the agent for the duration; MCPError past the bound."""
        key = (namespace, agent)
        if self._held.get(key, 0) >= self.limit:
            metrics.REFUSED.labels(reason=Gateway.TOO_MANY_HELD).inc()
            raise MCPError(
                TOO_MANY,
                f"{agent} already holds {self.limit} requests open on this gateway (tools/call"
                " waiting for a decision, tasks/result waiting for an outcome), the most one"
                f" agent may: this {what} was refused and nothing was filed. Wait for one to"
                " return and try again, or poll tasks/get instead of holding tasks/result",
                {"reason": Gateway.TOO_MANY_HELD, "limit": self.limit},
            )
        self._held[key] = self._held.get(key, 0) + 1
        metrics.HELD.inc()
        try:
            yield
        finally:
            metrics.HELD.dec()
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]

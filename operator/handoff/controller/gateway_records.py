"""What the operator does with an execution the MCP gateway recorded (handoff.gateway): the
gateway writes only the execution part of a request's status, so a carried-out rollback's
original is marked RolledBack here, as for the other executors."""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from handoff.domain.executors import MCP


async def after_gateway(
    body: Mapping[str, Any], rolled_back: Callable[[Any], Awaitable[None]]
) -> None:
    spec = body["spec"]
    execution = (body.get("status") or {}).get("execution") or {}
    executed = execution.get("outcome") == "Executed"
    if spec.get("execution") == MCP and spec.get("rollbackOf") and executed:
        await rolled_back(body)  # checks the operator filed it, and is idempotent

"""The MCPServer mappings whose cost has no bound the source shows (a comprehension, a regular
expression), evaluated over the agent's arguments in the sandbox (``adapters.sandbox``): a child
process with a CPU budget the kernel enforces, as the operator evaluates a policy's ``when``. A
mapping that spends the budget is a refusal for the model to read, nothing is filed, and the
gateway's event loop only waits for the answer meanwhile."""

from collections.abc import Hashable, Mapping
from typing import Any

from handoff.adapters.sandbox import Sandbox
from handoff.gateway.servers import ToolMapping, Values


async def mapping_values(
    sandbox: Sandbox | None, key: Hashable, mapping: ToolMapping, args: Mapping[str, Any]
) -> Values:
    """The answers of ``mapping``'s costly programs over ``args`` (nothing when it has none).
    Without a sandbox they stay unevaluated, and using them is refused."""
    sources = mapping.costly()
    if not sources or sandbox is None:
        return {}
    return await sandbox.values(key, {"args": dict(args)}, sources)

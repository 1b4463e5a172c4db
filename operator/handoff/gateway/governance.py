"""Which of an MCPServer's tools no policy names: a call to one gets its policy's defaultTier
(4 unless lowered), or is Denied NoPolicy when no policy governs the agent. Pure."""

from collections.abc import Iterable

from handoff.domain.globs import any_match
from handoff.domain.policy import CompiledPolicy
from handoff.domain.reasons import Mode
from handoff.gateway.servers import Server


def ungoverned(
    server: Server, tools: Iterable[str], policies: Iterable[CompiledPolicy]
) -> list[str]:
    """The tools whose action no rule of an Enforce policy governing the server's agents names."""
    governing = [p for p in policies if p.mode == Mode.ENFORCE
                 and any(p.governs(server.namespace, a) for a in server.agents)]  # fmt: skip
    found = []
    for tool in sorted(tools):
        mapping = server.mapping(tool)
        if mapping.hidden or not mapping.action:
            continue
        if not any(any_match(rule.actions, mapping.action) for p in governing for rule in p.rules):
            found.append(tool)
    return found

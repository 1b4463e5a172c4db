"""An MCPServer object compiled: who may use it, and how each of its tools' calls becomes an
ActionRequest (action, target, rollback plan). Pure: no I/O.

The mapping is the platform team's, reviewed in Git; the arguments it reads are the agent's, so
every evaluation here is total: a value, or a ``MappingError`` with a sentence.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handoff.domain.celload import cel
from handoff.domain.expressions import (
    FUNCTIONS,
    KNOWN_FUNCTIONS,
    TYPE_NAMES,
    check_depth,
    nests_comprehensions,
)
from handoff.domain.limits import MAX_SIZE, measure

SEPARATOR = "__"  # the tool names agents see: <server>__<tool> (no dots: some clients refuse them)
MAX_TARGET = 1024
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_NESTED = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\([^()]*\.\s*(?:all|exists|exists_one|map|filter)\s*\("
)


class MappingError(ValueError):
    """A mapping that does not compile, or cannot be evaluated on these arguments."""


Values = Mapping[str, Any]  # costly programs' answers by source: {"value": v}, or why none
_COSTLY = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter|matches)\s*\(|\bmatches\s*\(")


@dataclass(frozen=True, eq=False)
class Program:
    source: str
    program: Any  # cel.Program: the library ships no type stubs

    @property
    def costly(self) -> bool:
        """A comprehension or a regular expression: its cost over the agent's arguments has no
        bound the source shows, so it runs in the sandbox (a CPU budget), never in the loop.
        Anything else costs at most the source's length times the arguments' bounded size."""
        return bool(_COSTLY.search(self.source))

    def evaluate(self, args: Mapping[str, Any], values: Values | None = None) -> Any:
        if self.costly and values is not None:
            found = values.get(self.source)
            if isinstance(found, Mapping) and "value" in found:
                return found["value"]
            raise MappingError(str(found or f"{self.source!r} was not evaluated"))
        if self.costly:
            raise MappingError(f"{self.source!r} was not evaluated within a budget")
        variables = {"args": dict(args)}
        try:
            check_depth(variables)
            return self.program.execute(cel.Context(variables, dict(FUNCTIONS)))
        except Exception as e:  # the library raises KeyError, TypeError, RuntimeError...
            raise MappingError(f"{self.source!r} could not be evaluated: {e}") from e


def compile_program(source: str) -> Program:
    try:
        program = cel.compile(source)
    except Exception as e:
        raise MappingError(f"{source!r} does not parse: {str(e).splitlines()[0]}") from e
    bound = set(_BOUND.findall(source))
    unknown = sorted(set(program.variables()) - {"args"} - TYPE_NAMES - bound)
    if unknown:
        raise MappingError(f"{source!r} names unknown variables {', '.join(unknown)} (known: args)")
    calls = {n for n in program.functions() if n[:1].isalpha() and n not in KNOWN_FUNCTIONS}
    calls -= {"_[_]", "@in"}
    if calls:
        raise MappingError(f"{source!r} calls unknown functions {', '.join(sorted(calls))}")
    # Two readings of the source, each got round differently (a parenthesis hid a nesting from
    # the first; the second allows a map's lists to be looped again): a mapping either refuses
    # is refused. The arguments are the agent's, up to 256 items a list.
    if _NESTED.search(source) or nests_comprehensions(source):
        raise MappingError(f"{source!r} nests a comprehension inside another: too costly")
    return Program(source, program)


@dataclass(frozen=True)
class Inverse:
    tool: str
    arguments: Program
    description: str


@dataclass(frozen=True)
class ToolMapping:
    name: str
    action: str
    target: Program | None = None
    inverse: Inverse | None = None
    hidden: bool = False

    def costly(self) -> list[str]:
        """The sources of this tool's mappings that must run in the sandbox."""
        programs = [self.target, self.inverse.arguments if self.inverse else None]
        return [p.source for p in programs if p is not None and p.costly]

    def target_of(self, server: str, args: Mapping[str, Any], values: Values | None = None) -> str:
        if self.target is None:
            return f"mcp:{server}/{self.name}"
        value = self.target.evaluate(args, values)
        if not isinstance(value, str) or len(value) > MAX_TARGET:
            raise MappingError(
                f"the target of {self.name} ({self.target.source!r}) gave"
                f" {type(value).__name__}, not a string of at most {MAX_TARGET} characters"
            )
        return value

    def inverse_arguments(
        self, args: Mapping[str, Any], values: Values | None = None
    ) -> dict[str, Any] | None:
        if self.inverse is None:
            return None
        value = self.inverse.arguments.evaluate(args, values)
        if not isinstance(value, Mapping) or measure(value) > MAX_SIZE:
            raise MappingError(
                f"the inverse arguments of {self.name} ({self.inverse.arguments.source!r}) gave"
                f" {type(value).__name__}, not a map within the request's size bounds"
            )
        return {str(k): v for k, v in value.items()}


@dataclass(frozen=True)
class Server:
    namespace: str
    name: str
    url: str
    secret_name: str | None
    agents: frozenset[str]
    tools: Mapping[str, ToolMapping] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    generation: int = 0

    def allows(self, agent: str) -> bool:
        return agent in self.agents

    def mapping(self, tool: str) -> ToolMapping:
        return self.tools.get(tool) or ToolMapping(tool, default_action(self.name, tool))

    def tool_of_action(self, action: str) -> str | None:
        """The one tool whose calls become ``action``, or None (no tool, or several)."""
        found = [t for t, m in self.tools.items() if m.action == action]
        if not found and action.startswith(f"mcp.{self.name}."):
            tool = action[len(f"mcp.{self.name}.") :]
            found = [tool] if tool not in self.tools else []
        return found[0] if len(found) == 1 else None


def default_action(server: str, tool: str) -> str:
    return f"mcp.{server}.{tool}"


def compile_server(body: Mapping[str, Any]) -> Server:
    """An MCPServer's JSON (schema-checked by the API server) as a ``Server``; what does not
    compile goes into ``problems`` and that tool is left with its defaults out (not offered)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    name = str(meta["name"])
    tools: dict[str, ToolMapping] = {}
    problems: list[str] = []
    for raw in spec.get("tools") or []:
        tool = str(raw["name"])
        try:
            target = compile_program(raw["target"]) if raw.get("target") else None
            inverse = None
            if (inv := raw.get("inverse")) is not None:
                described = inv.get("description") or f"call {inv['tool']} to undo it"
                inverse = Inverse(str(inv["tool"]), compile_program(inv["arguments"]), described)
        except MappingError as e:
            problems.append(f"tools[{tool}]: {e}")
            tools[tool] = ToolMapping(tool, "", hidden=True)  # broken: never offered nor run
            continue
        action = str(raw.get("action") or default_action(name, tool))
        tools[tool] = ToolMapping(tool, action, target, inverse, bool(raw.get("hidden")))
    actions = [m.action for m in tools.values() if m.action]
    for action in sorted({a for a in actions if actions.count(a) > 1}):
        problems.append(f"several tools become the action {action}; give each its own")
    credentials = spec.get("credentials") or {}
    return Server(
        namespace=str(meta["namespace"]),
        name=name,
        url=str(spec.get("url", "")),
        secret_name=credentials.get("secretName"),
        agents=frozenset((spec.get("agents") or {}).get("serviceAccounts") or ()),
        tools=tools,
        problems=tuple(problems),
        generation=int(meta.get("generation") or 0),
    )


def split_tool_name(exposed: str) -> tuple[str, str] | None:
    server, sep, tool = exposed.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None

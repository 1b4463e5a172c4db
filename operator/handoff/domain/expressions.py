"""The CEL environment of a rule's ``when``.

Only ``action``, ``target``, ``parameters``, ``agent`` and ``labels`` are visible. The agent's
confidence is deliberately absent: a rule that names it (or any other unknown name) does not
compile, so no rule can let a model's opinion of itself decide how much oversight it gets.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cel

VARIABLES = frozenset({"action", "target", "parameters", "agent", "labels"})

# CEL's standard functions and operators (as the library names them). A call to anything else
# would only fail when a request arrives; refusing it at compile time is kinder.
_FUNCTIONS = frozenset(
    {
        "size", "startsWith", "endsWith", "contains", "matches", "int", "uint", "double",
        "string", "bool", "bytes", "timestamp", "duration", "type", "dyn", "has", "exists",
        "all", "exists_one", "map", "filter", "lowerAscii", "upperAscii", "trim", "split",
        "join", "replace", "substring", "indexOf", "lastIndexOf", "getFullYear", "getMonth",
        "getDayOfMonth", "getDayOfWeek", "getHours", "getMinutes", "getSeconds", "max", "min",
    }
)  # fmt: skip
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ExpressionError(ValueError):
    """A ``when`` expression that does not compile; the message is meant for the policy author."""


class Bindings:
    """One request's variables, converted to CEL values once and shared by every ``when``.

    Executing a program with a plain dict converts every variable on every call (about 13 us for
    a request's parameters and labels); a ``cel.Context`` converts them on first use and then
    evaluates in well under a microsecond. A policy of many conditional rules pays once.
    """

    __slots__ = ("_context", "variables")

    def __init__(self, variables: Mapping[str, object]) -> None:
        self.variables = variables
        self._context: Any = None  # cel.Context, built when a ``when`` is first evaluated

    @property
    def context(self) -> Any:
        if self._context is None:
            _check_depth(self.variables)
            self._context = cel.Context(dict(self.variables))
        return self._context


#: How deep a request's values may nest for a ``when`` to read them. The CEL library converts
#: values recursively and overflows the stack (a crash, not an exception) some thousands of
#: levels down, while the API server accepts JSON nested up to 10,000 levels.
MAX_DEPTH = 100


def _check_depth(variables: Mapping[str, object]) -> None:
    stack: list[tuple[object, int]] = [(variables, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"the request's values nest deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1) for item in value)


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled ``when``: evaluate it with :meth:`matches` many times."""

    source: str
    program: Any  # cel.Program: the library ships no type stubs

    def matches(self, variables: "Mapping[str, object] | Bindings") -> bool:
        """True when the expression holds; raises ExpressionError when it cannot be evaluated."""
        bindings = variables if isinstance(variables, Bindings) else Bindings(variables)
        try:
            result = self.program.execute(bindings.context)
        except Exception as e:  # the library raises KeyError, TypeError, RuntimeError...
            raise ExpressionError(f"{self.source!r} could not be evaluated: {_describe(e)}") from e
        if not isinstance(result, bool):
            raise ExpressionError(f"{self.source!r} gave {type(result).__name__}, not a boolean")
        return result


def compile_expression(source: str) -> Expression:
    """Compile ``source`` in the rule environment, or raise ExpressionError saying why not."""
    try:
        program = cel.compile(source)
    except Exception as e:
        raise ExpressionError(f"{source!r} does not parse: {_first_line(e)}") from e
    bound = set(_MACRO_VARIABLE.findall(source))
    unknown = sorted(set(program.variables()) - VARIABLES - bound)
    if "confidence" in unknown:
        raise ExpressionError(
            f"{source!r} names 'confidence': the agent's confidence is recorded but never decides"
            " a tier (use action, target, parameters, agent, labels)"
        )
    if unknown:
        raise ExpressionError(
            f"{source!r} names unknown variables {', '.join(unknown)}"
            f" (known: {', '.join(sorted(VARIABLES))})"
        )
    calls = {name for name in program.functions() if not _is_operator(name)}
    unknown_calls = sorted(calls - _FUNCTIONS)
    if unknown_calls:
        raise ExpressionError(f"{source!r} calls unknown functions {', '.join(unknown_calls)}")
    if _nests_comprehensions(source):
        raise ExpressionError(
            f"{source!r} is too costly: it nests a comprehension (all, exists, exists_one, map,"
            " filter) over a list inside another, so its cost is the product of list sizes an"
            " agent chooses; loop over one list at a time, or over the outer item's own list"
        )
    return Expression(source, program)


_MACRO_CALL = re.compile(
    r"(?<![\w.)\]\s])\s*([A-Za-z_]\w*)(?:\s*\.\s*[A-Za-z_]\w*|\s*\[[^\[\]]*\])*"
    r"\s*\.\s*(?:all|exists|exists_one|map|filter)\s*$"
)
_ANY_MACRO_CALL = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*$")
_BOUND = re.compile(r"\s*([A-Za-z_]\w*)\s*,")


def _nests_comprehensions(source: str) -> bool:
    """Whether a comprehension runs, inside another, over anything but the outer one's item.

    The library evaluates with no cost limit, holding the operator's event loop meanwhile. A
    comprehension over a request's values is linear in a size the API server bounds, and so is
    one over each item's own list (``items.all(i, i.tags.exists(t, ...))``); one over the same
    or another list inside it (``items.all(a, items.exists(b, ...))``) costs the product.
    """
    opened: list[str | None] = []  # per open parenthesis: a comprehension's variable, or None
    index, quote = 0, ""
    while index < len(source):
        char = source[index]
        if quote:
            if char == "\\":
                index += 1
            elif source.startswith(quote, index):
                index += len(quote) - 1
                quote = ""
        elif char in "'\"":
            triple = source[index : index + 3]
            quote = triple if triple in ("'''", '"""') else char
            index += len(quote) - 1
        elif char == "(":
            before = source[:index]
            variable: str | None = None
            if _ANY_MACRO_CALL.search(before):
                bound = _BOUND.match(source, index + 1)
                variable = bound.group(1) if bound else ""
                outer = next((v for v in reversed(opened) if v is not None), None)
                receiver = _MACRO_CALL.search(" " + before)
                if outer is not None and (receiver is None or receiver.group(1) != outer):
                    return True
            opened.append(variable)
        elif char == ")" and opened:
            opened.pop()
        index += 1
    return False


def _is_operator(name: str) -> bool:
    return name.startswith(("_", "@", "!"))


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no such key {error.args[0]!r}" if error.args else "no such key"
    return _first_line(error)

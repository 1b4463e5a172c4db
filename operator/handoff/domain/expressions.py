"""The CEL environment of a rule's ``when``.

Only ``action``, ``target``, ``parameters``, ``agent`` and ``labels`` are visible. The agent's
confidence is deliberately absent: a rule that names it (or any other unknown name) does not
compile, so no rule can let a model's opinion of itself decide how much oversight it gets.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handoff.domain.celload import cel, stdlib

VARIABLES = frozenset({"action", "target", "parameters", "agent", "labels"})
# CEL's type names, which the library lists as variables: ``type(parameters.amount) == int``.
TYPE_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)

#: The longest string a function below may build. ``replace`` and ``join`` can multiply sizes
#: (``s.replace('', s)``); past this they fail, and the rule with them (tier 4, fail closed).
MAX_BUILT = 1 << 20


def _bounded(text: str, function: str) -> str:
    if len(text) > MAX_BUILT:
        raise ValueError(f"{function} would build a string of {len(text)} characters")
    return text


def _replace(s: str, old: str, new: str, limit: int = -1) -> str:
    count = s.count(old) if old else len(s) + 1  # counted first: nothing over the bound is built
    count = count if limit < 0 else min(count, limit)
    if len(s) + count * (len(new) - len(old)) > MAX_BUILT:
        raise ValueError(f"replace would build a string over {MAX_BUILT} characters")
    return stdlib.replace(s, old, new, limit)


def _join(items: list[Any], separator: str = "") -> str:
    if len(items) * len(separator) > MAX_BUILT:
        raise ValueError(f"join would build a string over {MAX_BUILT} characters")
    return _bounded(stdlib.join(items, separator), "join")


#: Functions the ``cel`` library leaves out of its native standard library (cel-go and
#: Kubernetes have them), implemented in Python and given to every evaluation. Without them a
#: rule calling ``lowerAscii`` compiled, and every request reaching it failed closed to tier 4.
FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "bool": stdlib.bool_,
    "lowerAscii": stdlib.lower_ascii,
    "upperAscii": stdlib.upper_ascii,
    "trim": stdlib.trim,
    "split": stdlib.split,
    "join": _join,
    "replace": _replace,
    "substring": stdlib.substring,
    "indexOf": stdlib.index_of,
    "lastIndexOf": stdlib.last_index_of,
    "min": stdlib.min_,
    "max": stdlib.max_,
}

# What the library evaluates natively (a unit test calls each of these and of FUNCTIONS). A
# call to anything else would only fail when a request arrives; refusing it at compile time is
# kinder. Macros (has, all, exists, exists_one, map, filter) are not calls once parsed.
_NATIVE = frozenset(
    {
        "size", "startsWith", "endsWith", "contains", "matches", "int", "uint", "double",
        "string", "bytes", "timestamp", "duration", "type", "dyn", "getFullYear", "getMonth",
        "getDayOfMonth", "getDayOfWeek", "getHours", "getMinutes", "getSeconds",
    }
)  # fmt: skip
KNOWN_FUNCTIONS = _NATIVE | frozenset(FUNCTIONS)
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ExpressionError(ValueError):
    """A ``when`` expression that does not compile; the message is meant for the policy author."""


class Bindings:
    """One request's variables, converted to CEL values once and shared by every ``when``.

    Executing a program with a plain dict converts every variable on every call (about 13 us for
    a request's parameters and labels); a ``cel.Context`` converts them on first use and then
    evaluates in well under a microsecond. A policy of many conditional rules pays once.

    ``results``, when given, are the answers of every ``when`` this request reaches, evaluated
    elsewhere (the operator evaluates in a separate process with a CPU budget, see
    ``handoff.adapters.sandbox``): True, False, or why it could not be evaluated.
    """

    __slots__ = ("_context", "results", "variables")

    def __init__(
        self, variables: Mapping[str, object], results: "Mapping[str, bool | str] | None" = None
    ) -> None:
        self.variables = variables
        self.results = results
        self._context: Any = None  # cel.Context, built when a ``when`` is first evaluated

    @property
    def context(self) -> Any:
        if self._context is None:
            check_depth(self.variables)
            self._context = cel.Context(dict(self.variables), dict(FUNCTIONS))
        return self._context


#: How deep a request's values may nest for a ``when`` to read them. The CEL library converts
#: values recursively and overflows the stack (a crash, not an exception) some thousands of
#: levels down, while the API server accepts JSON nested up to 10,000 levels.
MAX_DEPTH = 100


def check_depth(variables: Mapping[str, object]) -> None:
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
        if bindings.results is not None:
            found = bindings.results.get(self.source)
            if found is None:  # a plan that missed it: fail closed rather than evaluate here
                raise ExpressionError(f"{self.source!r} was not evaluated")
            if isinstance(found, str):
                raise ExpressionError(found)
            return found
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
    unknown = sorted(set(program.variables()) - VARIABLES - TYPE_NAMES - bound)
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
    unknown_calls = sorted(calls - KNOWN_FUNCTIONS)
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

    A hint for the policy's author, not the boundary: the library has no cost limit, so the
    operator evaluates in a separate process with a CPU budget per request (a rule that spends it
    fails closed), and this check, which reads the source and not a syntax tree, can be got
    round (``a.map(x, b).exists(l, l.exists(...))``). A comprehension over a request's values is
    linear in a size the API server bounds, and so is one over each item's own list
    (``items.all(i, i.tags.exists(t, ...))``); one over the same or another list inside it
    (``items.all(a, items.exists(b, ...))``) costs the product.
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


#: For other CEL environments over agent-written values (the MCP gateway's mappings).
nests_comprehensions = _nests_comprehensions


def _is_operator(name: str) -> bool:
    return name.startswith(("_", "@", "!"))


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no such key {error.args[0]!r}" if error.args else "no such key"
    return _first_line(error)

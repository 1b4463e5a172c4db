"""The sandbox's child process: evaluates ``when`` expressions read from stdin, one request (a
JSON line) at a time, each within a CPU budget the kernel enforces. ``handoff.adapters.sandbox``
starts it (``python -m handoff.adapters.celchild MEMORY``) and reads its answers.

Only the standard library is imported before ``main`` runs, so that the child can load the CEL
library's native module without its package, which imports a command line's dependencies (half
a second of a restart, which is when another agent's request may be waiting).
"""

import importlib
import importlib.util
import json
import resource
import signal
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MEMORY = 1 << 30  # bytes of address space the child may map
DONE = "done"
MESSAGE_LIMIT = 1000  # characters of an error kept: a line must stay far below a pipe's buffer


def answers(
    variables: Mapping[str, object],
    groups: Sequence[Sequence[str]],
    compiled: dict[str, Any] | None = None,
) -> Iterator[tuple[int, int, bool | str]]:
    """Evaluate ``groups`` in order, each up to its first True or failure: (group, index,
    answer) for each expression evaluated: what the child runs, and ``sandbox.by_source`` reads."""
    from handoff.domain.expressions import (  # noqa: PLC0415 - after main() chose how cel loads
        Bindings,
        ExpressionError,
        compile_expression,
    )

    compiled = {} if compiled is None else compiled
    bindings = Bindings(variables)
    for g, group in enumerate(groups):
        for i, source in enumerate(group):
            answer: bool | str
            try:
                expression = compiled.get(source)
                if expression is None:
                    if len(compiled) > 4096:
                        compiled.clear()
                    expression = compiled[source] = compile_expression(source)
                answer = expression.matches(bindings)
            except ExpressionError as e:
                answer = str(e)[:MESSAGE_LIMIT]
            yield g, i, answer
            if answer is not False:
                break


def values(
    variables: Mapping[str, object], sources: Sequence[str], compiled: dict[str, Any]
) -> Iterator[tuple[int, int, dict[str, Any] | str]]:
    """Evaluate each of ``sources`` (the MCP gateway's mappings, over ``args``): (0, index,
    {"value": its JSON value}) or (0, index, why it has none)."""
    import cel  # noqa: PLC0415 - after main() chose how cel loads

    from handoff.domain.expressions import FUNCTIONS  # noqa: PLC0415

    context = cel.Context(dict(variables), dict(FUNCTIONS))
    for i, source in enumerate(sources):
        answer: dict[str, Any] | str
        try:
            program = compiled.get(source)
            if program is None:
                if len(compiled) > 4096:
                    compiled.clear()
                program = compiled[source] = cel.compile(source)
            value = program.execute(context)
            json.dumps(value)  # only JSON values leave the child
            answer = {"value": value}
        except Exception as e:  # the library raises KeyError, TypeError, RuntimeError...
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            answer = f"{source!r} could not be evaluated: {why}"[:MESSAGE_LIMIT]
        yield 0, i, answer


def _native_cel() -> None:
    """Load ``cel``'s native module under a bare package (falls back to the package itself)."""
    spec = importlib.util.find_spec("cel")
    if spec is None or not spec.submodule_search_locations or "cel" in sys.modules:
        return
    package = types.ModuleType("cel")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["cel"] = package
    try:
        native = importlib.import_module("cel.cel")
    except ImportError:
        del sys.modules["cel"]
        return
    for name in dir(native):
        if not name.startswith("_"):
            setattr(package, name, getattr(native, name))


def main() -> None:
    """Read requests on stdin, one JSON line each; answer on stdout; exit at end of input."""
    memory = int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    _native_cel()
    compiled: dict[str, Any] = {}
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        request = json.loads(line)
        # SIGPROF's default action ends the process: the kernel stops an evaluation that has used
        # its CPU budget, even inside the library's native code, which no Python handler reaches.
        signal.setitimer(signal.ITIMER_PROF, float(request["budget"]))
        given = (values(request["variables"], request["sources"], compiled)
                 if "sources" in request else
                 answers(request["variables"], request["groups"], compiled))  # fmt: skip
        for answer in given:
            out.write(json.dumps(answer).encode() + b"\n")
            out.flush()
        signal.setitimer(signal.ITIMER_PROF, 0)
        out.write(json.dumps(DONE).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()

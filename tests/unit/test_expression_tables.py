"""A rule's ``when``, table by table: each refusal's exact words, how deep a request's values may
nest, and string literals that only look like nested comprehensions."""

from typing import Any

import cel
import pytest
from handoff.domain.expressions import (
    MAX_DEPTH,
    Bindings,
    ExpressionError,
    _describe,
    _first_line,
    compile_expression,
)

NESTED = "parameters.items.all(a, parameters.items.exists(b, a == b))"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("confidence > 0.9",
         "'confidence > 0.9' names 'confidence': the agent's confidence is recorded but never"
         " decides a tier (use action, target, parameters, agent, labels)"),
        ("request.amount > 1 && user == 'x'",
         "\"request.amount > 1 && user == 'x'\" names unknown variables request, user"
         " (known: action, agent, labels, parameters, target)"),
        ("lookup(target) && fetch(agent)", "'lookup(target) && fetch(agent)' calls unknown functions fetch, lookup"),
    ],
)  # fmt: skip
def test_what_a_refused_when_says(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression(source)
    assert str(raised.value) == message


def test_a_when_that_does_not_parse_names_the_parsers_first_line() -> None:
    with pytest.raises(Exception) as parser:  # noqa: PT011 - whatever the library raises
        cel.compile("parameters.amount <=")
    first_line = str(parser.value).splitlines()[0]
    with pytest.raises(ExpressionError) as raised:
        compile_expression("parameters.amount <=")
    assert str(raised.value) == f"'parameters.amount <=' does not parse: {first_line}"


@pytest.mark.parametrize(
    ("source", "type_name"),
    [("parameters.amount", "int"), ("target", "str"), ("parameters", "dict")],
)
def test_a_when_that_is_not_a_boolean_names_what_it_gave(source: str, type_name: str) -> None:
    variables = {
        "action": "a",
        "target": "t",
        "parameters": {"amount": 1},
        "agent": "a",
        "labels": {},
    }
    with pytest.raises(ExpressionError) as raised:
        compile_expression(source).matches(variables)
    assert str(raised.value) == f"{source!r} gave {type_name}, not a boolean"


def nested(depth: int, as_list: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if as_list else {"x": value}
    return value


@pytest.mark.parametrize("as_list", [False, True])
@pytest.mark.parametrize(("depth", "refused"), [(MAX_DEPTH - 1, False), (MAX_DEPTH, True)])
def test_how_deep_a_requests_values_may_nest(depth: int, refused: bool, as_list: bool) -> None:
    """The variables are level 0, parameters level 1: a value 99 levels inside is at 100."""
    variables = {"action": "a", "target": "t", "parameters": nested(depth, as_list), "agent": "a",
                 "labels": {}}  # fmt: skip
    expression = compile_expression("size(parameters) >= 0")
    if not refused:
        assert expression.matches(Bindings(variables)) is True
        return
    with pytest.raises(ExpressionError) as raised:
        expression.matches(variables)
    assert str(raised.value) == (
        "'size(parameters) >= 0' could not be evaluated: the request's values nest deeper than"
        " 100 levels"
    )


def test_bindings_convert_once() -> None:
    bindings = Bindings({"action": "a"})
    assert bindings.context is bindings.context
    assert bindings.variables == {"action": "a"}


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (KeyError("amount"), "no such key 'amount'"),
        (KeyError(), "no such key"),
        (RuntimeError("first\nsecond"), "first"),
        (RuntimeError(), "RuntimeError"),
        (TypeError(""), "TypeError"),
    ],
)
def test_how_an_evaluation_error_is_described(error: Exception, described: str) -> None:
    assert _describe(error) == described


@pytest.mark.parametrize(
    ("error", "line"),
    [(ValueError("a\nb"), "a"), (ValueError(), "ValueError"), (SyntaxError("x"), "x")],
)
def test_the_first_line_of_an_error(error: Exception, line: str) -> None:
    assert _first_line(error) == line


@pytest.mark.parametrize(
    ("source", "too_costly"),
    [
        (f"'x' == target && {NESTED}", True),
        (f"target == ')' && {NESTED}", True),
        (f"target == '(' && {NESTED}", True),
        (f"target == 'it\\'s (' && {NESTED}", True),
        (f'target == "it\\"s (" && {NESTED}', True),
        (f"target == '''it's (''' && {NESTED}", True),
        (f'target == """a "quoted" (""" && {NESTED}', True),
        (f"target == '' && {NESTED}", True),
        (f"({NESTED})", True),
        ("target == 'items.all(a, items.exists(b, a == b))'", False),
        ("target == \"items.all(a, items.exists(b, a == b))\"", False),
        ("target == '''it's items.all(a, items.exists(b, 1 == 1))'''", False),
        ("target == 'a\\'items.all(a, items.exists(b, 1 == 1))'", False),
        ("parameters.items.all(i, (i > 1))", False),
        ("parameters.items.all(i, i.tags.exists(t, (t == 'x')))", False),
        ("(parameters.items.all(i, i > 1)) && parameters.b.exists(j, j > 1)", False),
        (f"target == '\\\\' && {NESTED}", True),  # an escaped backslash does not escape the quote
        (f"parameters.X == 1 && {NESTED}", True),
        ("target == 'items.all(a, items.exists(b, 1 == 1)) \\' x'", False),
        ("target == '''items.all(a, items.exists(b, 1 == 1))'''", False),
        ('target == """a " items.all(a, items.exists(b, 1 == 1)) " b"""', False),
        ("parameters.items.all(a, target.matches('x')) && parameters.items.exists(b, b == 1)", False),
        ("parameters.items.all()", False),  # no variable: not a comprehension to judge here
        ("size(parameters.items.filter(i, i > 1)) > 0 && parameters.b.exists(j, j > 1)", False),
    ],
)  # fmt: skip
def test_string_literals_are_not_comprehensions(source: str, too_costly: bool) -> None:
    problem = ""
    try:
        compile_expression(source)
    except ExpressionError as e:
        problem = str(e)
    assert ("is too costly" in problem) is too_costly, problem


VARIABLES = {"action": "a", "target": "t", "agent": "x", "labels": {}}
KIB = "a" * 1024


# Each row: items, the separator (None: join() without one), and the evaluation error's exact
# words (None: it evaluates). Items times separator may be 1 MiB, not a byte more (checked before
# anything is built); then what is built may be 1 MiB, not a byte more.
@pytest.mark.parametrize(
    ("items", "separator", "error"),
    [
        ([KIB] * 1024, None, None),
        ([KIB] * 1024, "", None),
        ([KIB] * 1024 + ["b"], None, "join would build a string of 1048577 characters"),
        ([KIB] * 2048, None, "join would build a string of 2097152 characters"),
        ([""] * 1024, KIB, None),  # 1023 separators built
        ([""] * 1025, KIB, "join would build a string over 1048576 characters"),
        ([""] * 2, "", None),
    ],
)
def test_a_join_is_bounded_by_what_it_would_build(
    items: list[str], separator: str | None, error: str | None
) -> None:
    call = "join()" if separator is None else "join(parameters.separator)"
    expression = compile_expression(f"parameters.items.{call}.size() >= 0")
    variables = VARIABLES | {"parameters": {"items": items, "separator": separator or ""}}
    if error is None:
        assert expression.matches(variables) is True
        return
    with pytest.raises(ExpressionError) as raised:
        expression.matches(variables)
    assert error in str(raised.value)


MIB = 1 << 20
OVER = "replace would build a string over 1048576 characters"


# Each row: the string, what to replace, with what, the limit (None: every one), and the error's
# exact words (None: it evaluates). The size is known before anything is built: 1 MiB is allowed,
# a byte more is not. An empty ``old`` matches len(s) + 1 times (between every two characters).
@pytest.mark.parametrize(
    ("s", "old", "new", "limit", "error"),
    [
        ("a" * 16, "", "b" * 61680, None, None),  # 16 + 17 x 61680 = 1 MiB
        ("a" * 16, "", "b" * 61681, None, OVER),
        ("a" * 1000 + "b", "b", "c" * (MIB - 1000), None, None),  # 1001 - 1 + (MIB - 1000)
        ("a" * 1000 + "b", "b", "c" * (MIB - 999), None, OVER),
        ("b" * 1000, "b", "c" * 2000, 1, None),
        ("b" * 1000, "b", "c" * 2000, 0, None),
        ("b" * 1000, "b", "c" * 2000, None, OVER),
        ("b" * 1000, "b", "c" * 2000, -1, OVER),
    ],
)
def test_a_replace_is_bounded_by_what_it_would_build(
    s: str, old: str, new: str, limit: int | None, error: str | None
) -> None:
    call = "replace(parameters.old, parameters.new" + ("" if limit is None else f", {limit}") + ")"
    expression = compile_expression(f"parameters.s.{call}.size() >= 0")
    variables = VARIABLES | {"parameters": {"s": s, "old": old, "new": new}}
    if error is None:
        assert expression.matches(variables) is True
        return
    with pytest.raises(ExpressionError) as raised:
        expression.matches(variables)
    assert error in str(raised.value)


# Each row: a macro called without a variable first (so not a comprehension), and the refusal's
# exact words: it is read as an unknown function, never a crash of the comprehension check.
@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("parameters.items.all(1 > 0)", "'parameters.items.all(1 > 0)' calls unknown functions all"),
        ("parameters.items.exists()", "'parameters.items.exists()' calls unknown functions exists"),
        ("parameters.a.all(x, x.b.exists(0))",
         "'parameters.a.all(x, x.b.exists(0))' calls unknown functions exists"),
    ],
)  # fmt: skip
def test_a_macro_without_a_variable_is_an_unknown_function(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression(source)
    assert str(raised.value) == message


# Each row: a ``when`` whose comment holds what looks like a macro call without a variable. The
# comprehension check reads the source, comments too: it must pass over them, not crash.
@pytest.mark.parametrize(
    "source",
    ["true // x.all(1)", "parameters.a.all(x, true) // .exists(1)", "true\n// y.map(2)"],
)
def test_a_comment_that_looks_like_a_macro_compiles(source: str) -> None:
    assert compile_expression(source).matches(VARIABLES | {"parameters": {"a": [1]}}) is True

import pytest
from handoff.domain.expressions import (
    KNOWN_FUNCTIONS,
    Bindings,
    ExpressionError,
    compile_expression,
)

VARS = {
    "action": "payments.refund",
    "target": "stripe:charge/ch_1",
    "parameters": {"amount": 50, "currency": "USD", "items": [1, 2, 3]},
    "agent": "payments-agent",
    "labels": {"team": "payments"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("parameters.amount <= 100", True),
        ("parameters.amount > 100", False),
        ("parameters.currency == 'USD' && action.startsWith('payments.')", True),
        ("target.matches('^stripe:')", True),
        ("agent == 'payments-agent' && labels.team == 'payments'", True),
        ("parameters.items.exists(i, i > 2)", True),
        ("parameters.items.all(i, i > 2)", False),
        ("has(parameters.amount) && !has(parameters.refunded)", True),
        ("size(parameters.items) == 3", True),
    ],
)
def test_expressions_evaluate(source: str, expected: bool) -> None:
    assert compile_expression(source).matches(VARS) is expected


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("confidence > 0.9", "confidence"),
        ("parameters.amount < 10 || confidence > 0.5", "confidence"),
        ("request.amount > 1", "unknown variables request"),
        ("parameters.amount <=", "does not parse"),
        ("lookup(target)", "unknown functions lookup"),
        ("", "does not parse"),
    ],
)
def test_expressions_that_do_not_compile_say_why(source: str, complaint: str) -> None:
    with pytest.raises(ExpressionError, match=complaint):
        compile_expression(source)


def test_a_missing_key_is_an_evaluation_error_not_false() -> None:
    expression = compile_expression("parameters.amount <= 100")
    with pytest.raises(ExpressionError, match="no such key 'amount'"):
        expression.matches({**VARS, "parameters": {}})


def test_a_non_boolean_result_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="not a boolean"):
        compile_expression("parameters.amount").matches(VARS)


# -- every function the compile check accepts exists when a request arrives -----------------------

#: One call of each function a rule may call, with what it must give. A rule calling one the
#: library did not have compiled, and every request reaching it went to tier 4 (fail closed).
CALLS = {
    "size": "size(parameters.items) == 3 && target.size() == 18",
    "startsWith": "action.startsWith('payments.')",
    "endsWith": "action.endsWith('.refund')",
    "contains": "target.contains('charge')",
    "matches": "target.matches('^stripe:')",
    "int": "int('42') == 42 && int(2.9) == 2",
    "uint": "uint(3) == 3u",
    "double": "double(1) == 1.0",
    "string": "string(parameters.amount) == '50'",
    "bytes": "bytes('a') == b'a'",
    "timestamp": "timestamp('2026-01-01T00:00:00Z') < timestamp('2027-01-01T00:00:00Z')",
    "duration": "duration('1m') > duration('59s')",
    "type": "type(parameters.amount) == int && type(target) == string && type(labels) == map",
    "dyn": "dyn(parameters.amount) == 50",
    "getFullYear": "timestamp('2026-03-04T05:06:07Z').getFullYear() == 2026",
    "getMonth": "timestamp('2026-03-04T05:06:07Z').getMonth() == 2",
    "getDayOfMonth": "timestamp('2026-03-04T05:06:07Z').getDayOfMonth() == 3",
    "getDayOfWeek": "timestamp('2026-03-04T05:06:07Z').getDayOfWeek() == 3",
    "getHours": "timestamp('2026-03-04T05:06:07Z').getHours() == 5",
    "getMinutes": "timestamp('2026-03-04T05:06:07Z').getMinutes() == 6",
    "getSeconds": "timestamp('2026-03-04T05:06:07Z').getSeconds() == 7",
    "bool": "bool('true') && !bool('false')",
    "lowerAscii": "'PAYMENTS.Refund'.lowerAscii() == action",
    "upperAscii": "labels.team.upperAscii() == 'PAYMENTS'",
    "trim": "'  USD \\t'.trim() == parameters.currency",
    "split": "target.split(':') == ['stripe', 'charge/ch_1'] && 'ab'.split('') == ['a', 'b']",
    "join": "['a', 'b'].join(',') == 'a,b' && ['x'].join() == 'x'",
    "replace": "action.replace('.', '/') == 'payments/refund' && 'aaa'.replace('a', 'b', 2) == 'bba'",
    "substring": "action.substring(0, 8) == 'payments' && action.substring(9) == 'refund'",
    "indexOf": "action.indexOf('.') == 8 && action.indexOf('x') == -1",
    "lastIndexOf": "'a.b.c'.lastIndexOf('.') == 3",
    "max": "max(1, 5, 3) == 5 && max(parameters.items) == 3",
    "min": "min(4, 2) == 2 && parameters.items.min() == 1",
}


def test_every_function_the_compile_check_accepts_is_called_here() -> None:
    assert set(CALLS) == KNOWN_FUNCTIONS


@pytest.mark.parametrize("function", sorted(CALLS))
def test_every_function_the_compile_check_accepts_runs(function: str) -> None:
    expression = compile_expression(CALLS[function])
    assert function in expression.program.functions()
    assert expression.matches(VARS) is True


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("target.replace('', target).size() > 0", ""),  # 18 x 19 characters: fine
        ("parameters.big.replace('', parameters.big).size() > 0", "replace would build"),
        ("parameters.big.replace('a', parameters.big).size() > 0", "replace would build"),
        ("parameters.many.join(parameters.big).size() > 0", "join would build"),
    ],
)
def test_string_functions_cannot_build_megabytes(source: str, complaint: str) -> None:
    variables = {**VARS, "parameters": {"big": "a" * 2000, "many": ["x"] * 1000}}
    expression = compile_expression(source)
    if not complaint:
        assert expression.matches(variables) is True
        return
    with pytest.raises(ExpressionError, match=complaint):
        expression.matches(variables)


def test_results_given_beforehand_are_used_and_never_recomputed() -> None:
    expression = compile_expression("parameters.amount <= 100")
    assert expression.matches(Bindings(VARS, {expression.source: False})) is False
    with pytest.raises(ExpressionError, match="exceeded the evaluation budget"):
        expression.matches(
            Bindings(VARS, {expression.source: "'x' exceeded the evaluation budget"})
        )
    with pytest.raises(ExpressionError, match="was not evaluated"):
        expression.matches(Bindings(VARS, {}))

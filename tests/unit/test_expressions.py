import pytest
from handoff.domain.expressions import ExpressionError, compile_expression

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

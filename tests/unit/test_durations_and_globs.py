from datetime import timedelta

import pytest
from handoff.domain.durations import format_duration, parse_duration
from handoff.domain.globs import Glob


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("168h", timedelta(days=7)),
        ("90s", timedelta(seconds=90)),
    ],
)
def test_durations_parse_and_format_back(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["", "7d", "5 m", "m", "1.5h", "-1s", "10ms"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("payments.*", "payments.refund", True),
        ("payments.*", "payments.refund.partial", True),
        ("payments.*", "payment.refund", False),
        ("report.*", "report", False),
        ("db.query", "db.query", True),
        ("db.query", "db.queryx", False),
        ("stripe:*", "stripe:charge/ch_1", True),
        ("customer.pii.?ead", "customer.pii.read", True),
        ("Payments.*", "payments.refund", False),
    ],
)
def test_globs(pattern: str, value: str, expected: bool) -> None:
    assert Glob.compile(pattern).matches(value) is expected


def test_glob_literal_prefix() -> None:
    assert Glob.compile("payments.*").literal_prefix == "payments."
    assert Glob.compile("db.query").literal_prefix == "db.query"
    assert Glob.compile("*").literal_prefix == ""

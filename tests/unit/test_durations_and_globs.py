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


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=-5), "0s"),
        (timedelta(milliseconds=999), "0s"),
        (timedelta(seconds=1), "1s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=60), "1m"),
        (timedelta(seconds=61), "1m1s"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, seconds=1), "1h1s"),
        (timedelta(days=7), "168h"),
        (timedelta(hours=25, minutes=1, seconds=2), "25h1m2s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [(" 15m ", timedelta(minutes=15)), ("1h0m0s", timedelta(hours=1)), ("0s", timedelta(0))],
)
def test_parse_duration_edges(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


def test_a_bad_duration_is_named_in_its_error() -> None:
    with pytest.raises(ValueError, match=r"^'7d' is not a duration like 30s, 15m, 2h or 1h30m$"):
        parse_duration("7d")
    with pytest.raises(ValueError, match=r"^'  ' is not a duration"):
        parse_duration("  ")


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("a?c", "a"), ("ab[cd]", "ab"), ("a*b?c", "a"), ("a?b*c", "a"), ("[ab]*", ""), ("abc", "abc")],
)
def test_glob_literal_prefix_stops_at_the_first_wildcard(pattern: str, prefix: str) -> None:
    assert Glob.compile(pattern).literal_prefix == prefix
    assert Glob.compile(pattern).pattern == pattern

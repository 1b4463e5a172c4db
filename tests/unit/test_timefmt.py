"""RFC 3339 times as Kubernetes writes them, read back into UTC."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from handoff.domain.timefmt import format_time, parse_time

PARIS = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 29, 18, 15, tzinfo=UTC), "2026-11-29T18:15:00Z"),
        (datetime(2026, 11, 29, 19, 15, tzinfo=PARIS), "2026-11-29T18:15:00Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "2026-01-02T03:04:05.000006Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=PARIS), "2026-01-02T02:04:05.500000Z"),
    ],
)
def test_format_time(value: datetime, text: str) -> None:
    assert format_time(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-11-29T18:15:00Z", datetime(2026, 11, 29, 18, 15, tzinfo=UTC)),
        ("2026-11-29T19:15:00+01:00", datetime(2026, 11, 29, 18, 15, tzinfo=UTC)),
        ("2026-01-02T03:04:05.000006Z", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_into_utc(text: str, value: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == value
    assert parsed.tzinfo is UTC
    assert parsed.hour == value.hour
    assert format_time(parsed) == format_time(value)


@pytest.fixture
def machine_in_paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("machine_in_paris")
def test_the_machines_time_zone_changes_nothing() -> None:
    assert format_time(datetime(2026, 11, 29, 18, 15, tzinfo=UTC)) == "2026-11-29T18:15:00Z"
    assert parse_time("2026-11-29T18:15:00Z").hour == 18

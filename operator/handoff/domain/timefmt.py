"""RFC 3339 times as Kubernetes writes them (``2026-11-29T18:15:00Z``)."""

from datetime import UTC, datetime


def format_time(value: datetime) -> str:
    """Second precision when exact, else microseconds: deadlines must not be rounded early."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)

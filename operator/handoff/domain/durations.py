"""Durations as policies write them: Go's form in hours, minutes and seconds (``30s``, ``15m``,
``2h``, ``1h30m``), the form that Kubernetes' CEL ``duration()`` reads, so the CRD can check the
same bounds that the operator applies."""

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

#: The bounds the CRD enforces on every window and hold (kept equal by a test).
MIN_WINDOW = timedelta(seconds=10)
MAX_WINDOW = timedelta(days=7)  # written 168h


def parse_duration(text: str) -> timedelta:
    """Parse ``text``; raise ValueError with a readable message when it is not a duration."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest form that parse_duration reads back to the same value."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)

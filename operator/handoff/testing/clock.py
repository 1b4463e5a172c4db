from datetime import UTC, datetime, timedelta


class FixedClock:
    """Returns the same time until moved: ``clock()``, ``clock.advance(seconds=30)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 29, 18, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self.now += delta or timedelta(**kwargs)
        return self.now

"""UTC, timezone-aware time helpers (the database stores UTC; SQLite drops tzinfo, we put it back)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

_clock: Callable[[], datetime] | None = None


def utcnow() -> datetime:
    """Now, in UTC: the portal's one clock (tests move it with :func:`frozen_at`)."""
    return _clock() if _clock is not None else datetime.now(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(moment: datetime) -> int:
    """Whole microseconds since 1970-01-01 UTC, exactly (integer arithmetic, no float)."""
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@contextmanager
def frozen_at(moment: datetime) -> Iterator[Callable[[datetime], None]]:
    """Make :func:`utcnow` return ``moment`` inside the block; the yielded function moves it."""
    global _clock
    if moment.tzinfo is None:
        raise ValueError("frozen_at needs an aware datetime")
    now = [moment]

    def move(to: datetime) -> None:
        now[0] = to

    previous, _clock = _clock, (lambda: now[0])
    try:
        yield move
    finally:
        _clock = previous


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime column that only accepts aware datetimes and always returns UTC-aware ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use timeutil.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

"""Weekly office hours: "stop at 19:00, start at 07:30, Monday to Friday, Europe/London".

Pure functions (no database), shared by tenants.yaml's check of a tenant's default and by the
provisioning schedules that carry them out. Times are local wall-clock times in the schedule's
zone, so 19:00 stays 19:00 across the clock changes; the moments worked out are UTC.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud_portal.i18n import _

#: Day names in ISO order (Monday first), as written in tenants.yaml, forms and the API.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_ZONE = "Europe/London"
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ScheduleError(ValueError):
    """A schedule that cannot be kept, with a sentence saying how to write it."""


def parse_clock(text: str | None, what: str) -> time | None:
    """"07:30" → 07:30; empty → None (that half of the schedule is off)."""
    text = (text or "").strip()
    if not text:
        return None
    match = _CLOCK.match(text)
    if not match:
        if what == "stop":
            raise ScheduleError(_("The stop time %(text)s is not a time of day; write it as HH:MM, e.g. 07:30.",
                                  text=repr(text)))
        raise ScheduleError(_("The start time %(text)s is not a time of day; write it as HH:MM, e.g. 07:30.",
                              text=repr(text)))
    return time(int(match.group(1)), int(match.group(2)))


def parse_zone(name: str | None) -> ZoneInfo:
    name = (name or DEFAULT_ZONE).strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(_("%(zone)s is not a time zone; write one such as Europe/London.",
                               zone=repr(name))) from None


def parse_days(days: list[str] | str | None) -> tuple[str, ...]:
    """["mon", "fri"] or "mon,fri" → ("mon", "fri") in week order; at least one day."""
    items = days.split(",") if isinstance(days, str) else list(days or [])
    wanted = {str(d).strip().lower()[:3] for d in items if str(d).strip()}
    unknown = sorted(wanted - set(WEEKDAYS))
    if unknown:
        raise ScheduleError(_("%(unknown)s is not a day; use %(days)s.", unknown=", ".join(unknown),
                               days=", ".join(WEEKDAYS)))
    if not wanted:
        raise ScheduleError(_("Choose at least one day of the week."))
    return tuple(d for d in WEEKDAYS if d in wanted)


@dataclass(frozen=True)
class Weekly:
    """On each of ``days``: stop at ``stop`` and start at ``start`` (either may be None), local time."""

    days: tuple[str, ...]
    stop: time | None
    start: time | None
    zone: str = DEFAULT_ZONE

    @classmethod
    def parse(cls, *, days: list[str] | str | None, stop: str | None, start: str | None,
              zone: str | None = None) -> Weekly:
        """Check and build a schedule; ScheduleError says what to correct."""
        stop_at, start_at = parse_clock(stop, "stop"), parse_clock(start, "start")
        if stop_at is None and start_at is None:
            raise ScheduleError(_("Give a time to stop, a time to start, or both."))
        if stop_at is not None and stop_at == start_at:
            raise ScheduleError(_("The stop and start times are the same; give different times."))
        return cls(parse_days(days), stop_at, start_at, parse_zone(zone).key)

    def as_dict(self) -> dict[str, object]:
        return {"days": list(self.days), "stop": _clock_text(self.stop), "start": _clock_text(self.start),
                "timezone": self.zone}

    def next_change(self, after: datetime) -> tuple[str, datetime] | None:
        """The first ("stop" | "start", moment in UTC) strictly after ``after``."""
        zone = ZoneInfo(self.zone)
        first_day = after.astimezone(zone).date() - timedelta(days=1)
        candidates: list[tuple[datetime, str]] = []
        for offset in range(9):
            day: date = first_day + timedelta(days=offset)
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            for action, clock in (("stop", self.stop), ("start", self.start)):
                if clock is not None:
                    moment = datetime.combine(day, clock, zone).astimezone(UTC)
                    if moment > after:
                        candidates.append((moment, action))
        if not candidates:
            return None
        moment, action = min(candidates)
        return action, moment


def _clock_text(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None

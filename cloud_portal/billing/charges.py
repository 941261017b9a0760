"""Charges from the ledger: pure arithmetic over intervals and rate versions, Decimal throughout.

- a running VM: vCPU-hours × vcpu_hour + GB-RAM-hours × ram_gb_hour + its disk;
- a stopped or errored VM: its disk only, ``disk_gb_month`` prorated by the seconds of the month;
- a desktop: its monthly price prorated by the seconds it existed in the month, running or not.

Months are calendar months in the billing time zone (so October in Europe/London has one
hour more than 31 × 24, March one less). Each line (person × server × component × rate
version) is rounded half-up to pence once, after summing its intervals.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from cloud_portal.errors import InvalidInput

PENNY = Decimal("0.01")
HOUR = Decimal(3600)
MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
#: component → (rate key, unit)
VM_COMPONENTS = {"vcpu": ("vcpu_hour", "vCPU-hours"), "ram": ("ram_gb_hour", "GB-hours"),
                 "disk": ("disk_gb_month", "GB-months")}


@dataclass(frozen=True)
class Interval:
    """A ledger interval as the arithmetic needs it (``end`` None: still open)."""

    server_id: int
    owner_id: int
    tenant_id: int
    kind: str
    catalog_key: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    running: bool
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class PriceVersion:
    key: str
    effective_from: date
    price: Decimal


@dataclass(frozen=True)
class LineKey:
    owner_id: int
    server_id: int
    tenant_id: int
    component: str
    rate_key: str
    rate_from: date


@dataclass(frozen=True)
class Line:
    key: LineKey
    quantity: Decimal
    unit: str
    rate: Decimal
    amount: Decimal


def parse_month(text: str) -> tuple[int, int]:
    """"2026-11" → (2026, 11); InvalidInput saying the expected form otherwise."""
    match = MONTH_PATTERN.match((text or "").strip())
    if not match:
        raise InvalidInput(f"{text!r} is not a month; write it as YYYY-MM, e.g. 2026-11.")
    return int(match.group(1)), int(match.group(2))


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first and next month's first instant (local midnight in ``tz``), in UTC."""
    year, number = parse_month(month)
    following = (year + 1, 1) if number == 12 else (year, number + 1)
    start = datetime.combine(date(year, number, 1), time(), tz).astimezone(UTC)
    end = datetime.combine(date(following[0], following[1], 1), time(), tz).astimezone(UTC)
    return start, end


def month_of(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def previous_month(month: str) -> str:
    year, number = parse_month(month)
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def next_month(month: str) -> str:
    year, number = parse_month(month)
    return f"{year + 1:04d}-01" if number == 12 else f"{year:04d}-{number + 1:02d}"


def _spans(versions: list[PriceVersion], tz: ZoneInfo) -> list[tuple[PriceVersion, datetime, datetime]]:
    """Each version with the instants it applies from and to (the next version's start)."""
    ordered = sorted(versions, key=lambda v: v.effective_from)
    far = datetime(9999, 1, 1, tzinfo=UTC)
    starts = [datetime.combine(v.effective_from, time(), tz).astimezone(UTC) for v in ordered]
    return [(v, starts[i], starts[i + 1] if i + 1 < len(starts) else far) for i, v in enumerate(ordered)]


def _seconds(a: datetime, b: datetime) -> Decimal:
    delta = b - a
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def month_lines(intervals: Iterable[Interval], prices: Mapping[str, list[PriceVersion]], month: str,
                tz: ZoneInfo, *, until: datetime | None = None) -> list[Line]:
    """The month's lines from ``intervals``; open intervals run to ``until`` (default: month end)."""
    month_start, month_end = month_bounds(month, tz)
    stop = min(month_end, until) if until is not None else month_end
    month_seconds = _seconds(month_start, month_end)
    spans = {key: _spans(versions, tz) for key, versions in prices.items()}
    quantities: dict[LineKey, Decimal] = defaultdict(Decimal)
    units: dict[LineKey, tuple[str, Decimal]] = {}
    for interval in intervals:
        begin = max(interval.start, month_start)
        end = min(interval.end or stop, stop)
        if end <= begin:
            continue
        if interval.kind == "desktop":
            parts = [("desktop", f"desktop:{interval.catalog_key}", "desktop-months", Decimal(1) / month_seconds)]
        else:
            gb = Decimal(interval.ram_mib) / 1024
            parts = [("disk", "disk_gb_month", "GB-months", Decimal(interval.disk_gb) / month_seconds)]
            if interval.running:
                parts += [("vcpu", "vcpu_hour", "vCPU-hours", Decimal(interval.vcpus) / HOUR),
                          ("ram", "ram_gb_hour", "GB-hours", gb / HOUR)]
        for component, rate_key, unit, per_second in parts:
            for version, applies_from, applies_to in spans.get(rate_key, []):
                a, b = max(begin, applies_from), min(end, applies_to)
                if b <= a:
                    continue
                key = LineKey(interval.owner_id, interval.server_id, interval.tenant_id, component, rate_key,
                              version.effective_from)
                quantities[key] += per_second * _seconds(a, b)
                units[key] = (unit, version.price)
    lines = []
    for key, quantity in quantities.items():
        unit, rate = units[key]
        lines.append(Line(key, quantity, unit, rate, (quantity * rate).quantize(PENNY, rounding=ROUND_HALF_UP)))
    lines.sort(key=lambda line: (line.key.tenant_id, line.key.owner_id, line.key.server_id, line.key.component,
                                 line.key.rate_from))
    return lines


def total(lines: Iterable[Line]) -> Decimal:
    return sum((line.amount for line in lines), Decimal("0.00"))



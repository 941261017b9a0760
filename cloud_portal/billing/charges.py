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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from cloud_portal.errors import InvalidInput
from cloud_portal.i18n import _

PENNY = Decimal("0.01")
HOUR = Decimal(3600)
MICROS_PER_SECOND = 1_000_000
MICROS_PER_HOUR = 3600 * MICROS_PER_SECOND
#: Billing months run from 2000 (before any server existed) to 9998 (its next month still has a date).
FIRST_YEAR, LAST_YEAR = 2000, 9998
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
        raise InvalidInput(_("%(text)s is not a month; write it as YYYY-MM, e.g. 2026-11.", text=repr(text)))
    year = int(match.group(1))
    if not FIRST_YEAR <= year <= LAST_YEAR:  # (the month after 9999-12 cannot even be written down)
        raise InvalidInput(_("%(text)s is outside the months the portal bills (%(first)s-01 to %(last)s-12).",
                             text=repr(text), first=FIRST_YEAR, last=LAST_YEAR))
    return year, int(match.group(2))


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


def micros(a: datetime, b: datetime) -> int:
    """Whole microseconds from ``a`` to ``b`` (exact: no float on the way)."""
    delta = b - a
    return (delta.days * 86400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


@dataclass(frozen=True)
class Usage:
    """What one server used in one stretch of a month, summed over its intervals, in exact integers.

    One per line group: person, server, tenant, kind and, for a desktop, its catalog key (its
    price; a VM's sizes are in the sums). Each sum is microseconds × size, so the arithmetic
    stays exact until each line is rounded once. The database sums these
    (``billing.ledger.usage_between``); :func:`usage_of` is the same sum in Python.
    """

    owner_id: int
    server_id: int
    tenant_id: int
    kind: str
    #: A desktop's catalog key; "" for a VM.
    catalog_key: str
    #: Microseconds it existed (running or not), and of those, running.
    micros: int
    running_micros: int
    #: Σ µs × vCPUs and Σ µs × MiB while running; Σ µs × disk GB whatever the state.
    vcpu_micros: int
    ram_mib_micros: int
    disk_gb_micros: int


def rate_segments(prices: Mapping[str, list[PriceVersion]], month: str, tz: ZoneInfo,
                  until: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """[month start, month end or ``until``) cut wherever a rate version begins: inside one
    segment every rate has one version, so a segment's usage prices without splitting."""
    month_start, month_end = month_bounds(month, tz)
    stop = min(month_end, until) if until is not None else month_end
    if stop <= month_start:
        return []
    cuts = sorted({applies_from for versions in prices.values() for _p, applies_from, _r in _spans(versions, tz)
                   if month_start < applies_from < stop})
    edges = [month_start, *cuts, stop]
    return list(zip(edges, edges[1:], strict=False))


def usage_of(intervals: Iterable[Interval], begin: datetime, end: datetime) -> list[Usage]:
    """``intervals`` clipped to [begin, end) and summed per line group (open ones run to ``end``)."""
    sums: dict[tuple[int, int, int, str, str], list[int]] = {}
    for i in intervals:
        a, b = max(i.start, begin), min(i.end or end, end)
        if b <= a:
            continue
        us = micros(a, b)
        key = (i.owner_id, i.server_id, i.tenant_id, i.kind, i.catalog_key if i.kind == "desktop" else "")
        group = sums.setdefault(key, [0, 0, 0, 0, 0])
        group[0] += us
        if i.running:
            group[1] += us
            group[2] += us * i.vcpus
            group[3] += us * i.ram_mib
        group[4] += us * i.disk_gb
    return [Usage(*key, *totals) for key, totals in sums.items()]


@dataclass(frozen=True)
class Part:
    """A component a line group is charged for in one stretch of a month, at one rate version."""

    component: str
    rate_key: str
    unit: str
    version: PriceVersion
    #: The :class:`Usage` sum it is charged on, and how much of that sum makes one unit (an
    #: hour of a vCPU, a GB-hour, a GB-month, a desktop-month).
    charged_on: str
    per_unit: int
    #: vCPUs and RAM are charged only for a group that ran at all (a stopped VM: disk only).
    only_if_ran: bool = False


def parts_at(spans: Mapping[str, list[tuple[PriceVersion, datetime, datetime]]], instant: datetime,
             month_micros: int) -> tuple[list[Part], dict[str, Part]]:
    """What is charged from ``instant`` (a segment's first instant, see :func:`rate_segments`):
    a VM's parts, and each desktop's part by catalog key. A component with no rate version in
    force is not charged. ``spans`` is :func:`price_spans`'s."""
    versions = {key: v for key, key_spans in spans.items() for v, a, b in key_spans if a <= instant < b}
    vm: list[Part] = []
    for component, charged_on, per_unit, only_if_ran in (
            ("disk", "disk_gb_micros", month_micros, False),
            ("vcpu", "vcpu_micros", MICROS_PER_HOUR, True),
            ("ram", "ram_mib_micros", MICROS_PER_HOUR * 1024, True)):
        rate_key, unit = VM_COMPONENTS[component]
        if rate_key in versions:
            vm.append(Part(component, rate_key, unit, versions[rate_key], charged_on, per_unit, only_if_ran))
    desktops = {key.removeprefix("desktop:"): Part("desktop", key, "desktop-months", version, "micros", month_micros)
                for key, version in versions.items() if key.startswith("desktop:")}
    return vm, desktops


def price_spans(prices: Mapping[str, list[PriceVersion]], tz: ZoneInfo
                ) -> dict[str, list[tuple[PriceVersion, datetime, datetime]]]:
    """Each rate key's versions with the instants each applies from and to."""
    return {key: _spans(versions, tz) for key, versions in prices.items()}


@dataclass
class _Pending:
    """A line being summed: exact integer usage, and what turns it into the line's unit and price."""

    used: int
    #: How much of ``used`` makes one unit (an hour of a vCPU, a GB-hour, a GB-month, a month).
    per_unit: int
    unit: str
    rate: Decimal


def lines_from_usage(usage_by_segment: Iterable[tuple[datetime, Iterable[Usage]]],
                     prices: Mapping[str, list[PriceVersion]], month: str, tz: ZoneInfo) -> list[Line]:
    """The month's lines from each segment's usage (segments from :func:`rate_segments`, given by
    their first instant). Quantities and amounts are exact until each line is rounded half-up
    to pence, once."""
    month_start, month_end = month_bounds(month, tz)
    month_micros = micros(month_start, month_end)
    spans = price_spans(prices, tz)
    # Keyed by LineKey's fields as a plain tuple: a close sums tens of thousands of these.
    pending: dict[tuple[int, int, int, str, str, date], _Pending] = {}
    for segment_start, usage in usage_by_segment:
        vm_parts, desktop_parts = parts_at(spans, segment_start, month_micros)
        for u in usage:
            if u.kind == "desktop":
                desktop = desktop_parts.get(u.catalog_key)
                parts = [desktop] if desktop is not None else []
            else:
                parts = [p for p in vm_parts if u.running_micros or not p.only_if_ran]
            for part in parts:
                used = getattr(u, part.charged_on)
                key = (u.owner_id, u.server_id, u.tenant_id, part.component, part.rate_key,
                       part.version.effective_from)
                entry = pending.get(key)
                if entry is None:
                    pending[key] = _Pending(used, part.per_unit, part.unit, part.version.price)
                else:
                    entry.used += used
    lines = []
    for key, p in pending.items():
        lines.append(Line(LineKey(*key), Decimal(p.used) / p.per_unit, p.unit, p.rate,
                          pence_half_up(p.used, p.per_unit, p.rate) * PENNY))
    lines.sort(key=lambda line: (line.key.tenant_id, line.key.owner_id, line.key.server_id, line.key.component,
                                 line.key.rate_from))
    return lines


def pence_half_up(used: int, per_unit: int, rate: Decimal) -> int:
    """``used / per_unit × rate`` in pence, rounded half-up, in integers: exact whatever the
    sizes (Decimal would round at 28 digits)."""
    numerator, denominator = rate.as_integer_ratio()
    scale = per_unit * denominator
    return (2 * 100 * used * numerator + scale) // (2 * scale)


def month_lines(intervals: Iterable[Interval], prices: Mapping[str, list[PriceVersion]], month: str,
                tz: ZoneInfo, *, until: datetime | None = None) -> list[Line]:
    """The month's lines from ``intervals``; open intervals run to ``until`` (default: month end)."""
    intervals = list(intervals)
    return lines_from_usage(((a, usage_of(intervals, a, b)) for a, b in rate_segments(prices, month, tz, until)),
                            prices, month, tz)


def total(lines: Iterable[Line]) -> Decimal:
    return sum((line.amount for line in lines), Decimal("0.00"))



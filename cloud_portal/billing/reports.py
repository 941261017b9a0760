"""Billing figures for pages: totals per tenant, person and server, a year's series, the
partner summary, and month to date with the month-end forecast.

Every function returns plain dataclasses and runs a fixed number of queries, however many
tenants, people, servers or intervals there are: statements come from
:func:`months.statement` (closed lines, or the month to date from the ledger) and names are
looked up once per function. Money stays Decimal; months are billing-zone calendar months.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from cloud_portal.accounts.models import User
from cloud_portal.billing import charges, ledger, months
from cloud_portal.billing.models import RUNNING, BillingMonth, StatementLine, UsageInterval
from cloud_portal.extensions import db
from cloud_portal.provisioning.models import Server
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

ZERO = Decimal("0.00")
TENTH = Decimal("0.1")
HOUR = Decimal(3600)


def current_month() -> str:
    """The billing month it is now (billing time zone)."""
    return charges.month_of(utcnow(), months.billing_zone())


# Tenants -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TenantRef:
    """A tenant as the pages name it."""

    id: int
    slug: str
    name_en: str
    name_cy: str
    cost_centre: str
    is_platform: bool

    def display_name(self, locale: str) -> str:
        return self.name_cy if locale == "cy" else self.name_en


def _tenants(with_charges: Iterable[int]) -> list[TenantRef]:
    """Active member tenants, plus any tenant (platform, removed) that has charges: one query."""
    ids = set(with_charges)
    query = select(Tenant).where((Tenant.active.is_(True) & Tenant.is_platform.is_(False)) | Tenant.id.in_(ids))
    return [TenantRef(t.id, t.slug, t.name_en, t.name_cy, t.cost_centre, t.is_platform)
            for t in db.session.scalars(query.order_by(Tenant.is_platform, Tenant.name_en))]


def _by_tenant(rows: Iterable[months.StatementRow]) -> dict[int, Decimal]:
    totals: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        totals[row.tenant_id] += row.amount
    return dict(totals)


@dataclass(frozen=True)
class TenantTotal:
    tenant: TenantRef
    total: Decimal
    previous: Decimal

    @property
    def change(self) -> Decimal:
        return self.total - self.previous

    @property
    def change_percent(self) -> Decimal | None:
        """The change as a percentage of the previous month (None when that was nothing)."""
        if not self.previous:
            return None
        return (self.change * 100 / self.previous).quantize(TENTH, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class TenantTotals:
    month: str
    previous_month: str
    closed: bool
    rows: list[TenantTotal]

    @property
    def total(self) -> Decimal:
        return sum((r.total for r in self.rows), ZERO)

    @property
    def previous(self) -> Decimal:
        return sum((r.previous for r in self.rows), ZERO)

    @property
    def change(self) -> Decimal:
        return self.total - self.previous


def tenant_totals(month: str) -> TenantTotals:
    """Each tenant's total for ``month``, its previous month's total and the change."""
    previous_month = charges.previous_month(month)
    closed, rows = months.statement(month)
    totals = _by_tenant(rows)
    previous = _by_tenant(months.statement(previous_month)[1])
    charged = {t for t, amount in totals.items() if amount} | {t for t, amount in previous.items() if amount}
    return TenantTotals(month, previous_month, closed, [
        TenantTotal(t, totals.get(t.id, ZERO), previous.get(t.id, ZERO)) for t in _tenants(charged)])


# People and servers --------------------------------------------------------------------------

@dataclass(frozen=True)
class PersonTotal:
    owner_id: int
    email: str
    display_name: str
    servers: int
    total: Decimal


def people_totals(month: str, tenant_id: int) -> list[PersonTotal]:
    """The people with charges in ``tenant_id`` in ``month``, largest total first (two queries
    for the statement, one for the names)."""
    rows = months.statement(month, tenant_id=tenant_id)[1]
    totals: dict[int, Decimal] = defaultdict(lambda: ZERO)
    servers: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        totals[row.owner_id] += row.amount
        servers[row.owner_id].add(row.server_id)
    names = {u.id: u for u in db.session.execute(
        select(User.id, User.email, User.display_name).where(User.id.in_(totals)))} if totals else {}
    out = [PersonTotal(owner, names[owner].email if owner in names else str(owner),
                       names[owner].display_name if owner in names else "", len(servers[owner]), amount)
           for owner, amount in totals.items()]
    return sorted(out, key=lambda p: (-p.total, p.email))


@dataclass(frozen=True)
class ServerRef:
    id: int
    name: str
    kind: str
    status: str
    tenant_id: int
    owner_id: int


def _servers(ids: Iterable[int]) -> dict[int, ServerRef]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {s.id: ServerRef(s.id, s.name, s.kind, s.status, s.tenant_id, s.owner_id) for s in db.session.execute(
        select(Server.id, Server.name, Server.kind, Server.status, Server.tenant_id, Server.owner_id)
        .where(Server.id.in_(wanted)))}


@dataclass(frozen=True)
class ServerTotal:
    server: ServerRef
    lines: list[months.StatementRow]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


def server_totals(month: str, owner_id: int) -> list[ServerTotal]:
    """A person's charges in ``month`` server by server, each with its statement lines."""
    rows = months.statement(month, owner_id=owner_id)[1]
    lines: dict[int, list[months.StatementRow]] = defaultdict(list)
    for row in rows:
        lines[row.server_id].append(row)
    refs = _servers(lines)
    out = [ServerTotal(refs.get(sid) or ServerRef(sid, str(sid), "", "", rs[0].tenant_id, owner_id), rs)
           for sid, rs in lines.items()]
    return sorted(out, key=lambda s: (-s.total, s.server.name))


def person(owner_id: int) -> User | None:
    return db.session.get(User, owner_id)


def server(server_id: int) -> Server | None:
    return db.session.get(Server, server_id)


def tenant_by_slug(slug: str) -> TenantRef | None:
    t = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    return TenantRef(t.id, t.slug, t.name_en, t.name_cy, t.cost_centre, t.is_platform) if t else None


# One server ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IntervalRow:
    """A ledger interval of a server, with the part of it inside the month asked about."""

    id: int
    owner_email: str
    state: str
    catalog_key: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    started_at: datetime
    ended_at: datetime | None
    cause: str
    #: Hours of the interval inside the month (open intervals: up to now).
    hours_in_month: Decimal

    @property
    def running(self) -> bool:
        return self.state == RUNNING


def _server_intervals(server_id: int, start: datetime, end: datetime) -> list[tuple[UsageInterval, str]]:
    query = (select(UsageInterval, User.email).join(User, User.id == UsageInterval.owner_id)
             .where(UsageInterval.server_id == server_id, UsageInterval.started_at < end,
                    (UsageInterval.ended_at.is_(None)) | (UsageInterval.ended_at > start))
             .order_by(UsageInterval.started_at))
    return [(row, email) for row, email in db.session.execute(query).all()]


def _as_interval(r: UsageInterval) -> charges.Interval:
    return charges.Interval(r.server_id, r.owner_id, r.tenant_id, r.kind, r.catalog_key, r.vcpus, r.ram_mib,
                            r.disk_gb, r.state == RUNNING, r.started_at, r.ended_at)


def intervals_for(server_id: int, month: str) -> list[IntervalRow]:
    """The server's ledger intervals overlapping ``month`` (one query)."""
    start, end = charges.month_bounds(month, months.billing_zone())
    stop = min(end, utcnow())
    out = []
    for r, email in _server_intervals(server_id, start, end):
        a, b = max(r.started_at, start), min(r.ended_at or stop, stop)
        delta = b - a
        seconds = Decimal(delta.days * 86400 + delta.seconds) if b > a else Decimal(0)
        hours = (seconds / HOUR).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out.append(IntervalRow(r.id, email, r.state, r.catalog_key, r.vcpus, r.ram_mib, r.disk_gb, r.started_at,
                               r.ended_at, r.cause, hours))
    return out


def server_lines(month: str, server_id: int) -> tuple[bool, list[months.StatementRow]]:
    """(closed?, the server's lines in ``month``): closed lines, or the month to date."""
    charges.parse_month(month)
    if months.is_closed(month):
        rows = db.session.scalars(select(StatementLine).where(StatementLine.month == month,
                                                              StatementLine.server_id == server_id)
                                  .order_by(StatementLine.id))
        return True, [months.StatementRow(month, r.tenant_id, r.owner_id, r.server_id, r.component, r.rate_key,
                                          r.rate_from, r.quantity, r.unit, r.rate, r.amount, r.adjusts_month)
                      for r in rows]
    zone = months.billing_zone()
    start, end = charges.month_bounds(month, zone)
    intervals = [_as_interval(r) for r, _ in _server_intervals(server_id, start, end)]
    lines = charges.month_lines(intervals, ledger.price_versions(), month, zone, until=utcnow())
    return False, [months.StatementRow(month, k.tenant_id, k.owner_id, k.server_id, k.component, k.rate_key,
                                       k.rate_from, line.quantity, line.unit, line.rate, line.amount)
                   for line in lines for k in [line.key]]


@dataclass(frozen=True)
class SoFar:
    """Charges of the current month so far, and where they would end if nothing changed."""

    month: str
    so_far: Decimal
    forecast: Decimal
    as_at: datetime


def server_cost_so_far(server_id: int) -> SoFar:
    """What the server has cost this month so far (two queries), and its month-end forecast."""
    zone = months.billing_zone()
    month = current_month()
    start, end = charges.month_bounds(month, zone)
    intervals = [_as_interval(r) for r, _ in _server_intervals(server_id, start, end)]
    return _so_far(month, intervals, end)


def _so_far(month: str, intervals: list[charges.Interval], month_end: datetime) -> SoFar:
    zone = months.billing_zone()
    prices = ledger.price_versions()
    now = utcnow()
    so_far = charges.total(charges.month_lines(intervals, prices, month, zone, until=now))
    forecast = charges.total(charges.month_lines(intervals, prices, month, zone, until=month_end))
    return SoFar(month, so_far, forecast, now)


# A person's month to date -------------------------------------------------------------------

def month_to_date(owner_id: int) -> SoFar:
    """A person's charges this month so far and the month-end forecast: what runs now is
    assumed to keep running to the end of the month (two queries)."""
    zone = months.billing_zone()
    month = current_month()
    start, end = charges.month_bounds(month, zone)
    return _so_far(month, ledger.intervals_between(start, end, owner_id=owner_id), end)


def forecast(owner_id: int) -> Decimal:
    """A person's month-end forecast (see :func:`month_to_date`)."""
    return month_to_date(owner_id).forecast


def tenants_month_to_date() -> dict[int, Decimal]:
    """Tenant id → this month's charges so far (three queries)."""
    return _by_tenant(months.statement(current_month())[1])


# A year of months ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SeriesRow:
    tenant: TenantRef
    #: One total per month of :attr:`MonthlySeries.months`, oldest first.
    totals: list[Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.totals, ZERO)


@dataclass(frozen=True)
class MonthlySeries:
    months: list[str]
    rows: list[SeriesRow]
    closed: set[str] = field(default_factory=set)

    def month_total(self, index: int) -> Decimal:
        return sum((row.totals[index] for row in self.rows), ZERO)

    @property
    def month_totals(self) -> list[Decimal]:
        return [self.month_total(i) for i in range(len(self.months))]


def monthly_series(end_month: str, count: int = 12) -> MonthlySeries:
    """Each tenant's total in the ``count`` months up to ``end_month``, oldest first.

    Closed months are summed from their statement lines in the database (one query); open
    months are worked out from one ledger query spanning them all.
    """
    wanted = [end_month]
    for _ in range(count - 1):
        wanted.append(charges.previous_month(wanted[-1]))
    wanted.reverse()
    closed = set(db.session.scalars(select(BillingMonth.month).where(BillingMonth.month.in_(wanted))))
    totals: dict[tuple[str, int], Decimal] = defaultdict(lambda: ZERO)
    if closed:
        for month, tenant_id, amount in db.session.execute(
                select(StatementLine.month, StatementLine.tenant_id, func.sum(StatementLine.amount))
                .where(StatementLine.month.in_(closed)).group_by(StatementLine.month, StatementLine.tenant_id)):
            totals[(month, tenant_id)] += Decimal(amount).quantize(charges.PENNY)
    open_months = [mm for mm in wanted if mm not in closed]
    if open_months:
        zone = months.billing_zone()
        start = charges.month_bounds(open_months[0], zone)[0]
        end = charges.month_bounds(open_months[-1], zone)[1]
        intervals = ledger.intervals_between(start, end)
        prices = ledger.price_versions()
        now = utcnow()
        for month in open_months:
            for line in charges.month_lines(intervals, prices, month, zone, until=now):
                totals[(month, line.key.tenant_id)] += line.amount
    charged = {tenant_id for (_, tenant_id), amount in totals.items() if amount}
    return MonthlySeries(wanted, [SeriesRow(t, [totals.get((mm, t.id), ZERO) for mm in wanted])
                                  for t in _tenants(charged)], closed)


# The partner summary ----------------------------------------------------------------------

@dataclass(frozen=True)
class PartnerRow:
    tenant: TenantRef
    vcpu_hours: Decimal
    ram_gb_hours: Decimal
    #: Desktops with time in the month.
    desktops: int
    cost: Decimal
    #: Per cent of the platform total, to one decimal place.
    share: Decimal


@dataclass(frozen=True)
class PartnerSummary:
    month: str
    closed: bool
    rows: list[PartnerRow]

    @property
    def total(self) -> Decimal:
        return sum((r.cost for r in self.rows), ZERO)

    @property
    def vcpu_hours(self) -> Decimal:
        return sum((r.vcpu_hours for r in self.rows), Decimal(0))

    @property
    def ram_gb_hours(self) -> Decimal:
        return sum((r.ram_gb_hours for r in self.rows), Decimal(0))

    @property
    def desktops(self) -> int:
        return sum(r.desktops for r in self.rows)


def partner_summary(month: str) -> PartnerSummary:
    """Per tenant: vCPU-hours, GB-hours of memory, desktops, cost and share of the platform total.

    Usage counts the month's own lines; the cost also includes adjustments to earlier months
    billed in it (their quantities are the earlier month's, so they are not counted as usage).
    """
    closed, rows = months.statement(month)
    vcpu: dict[int, Decimal] = defaultdict(Decimal)
    ram: dict[int, Decimal] = defaultdict(Decimal)
    desktops: dict[int, set[int]] = defaultdict(set)
    cost: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        cost[row.tenant_id] += row.amount
        if row.adjusts_month is not None:
            continue
        if row.component == "vcpu":
            vcpu[row.tenant_id] += row.quantity
        elif row.component == "ram":
            ram[row.tenant_id] += row.quantity
        elif row.component == "desktop" and row.quantity > 0:
            desktops[row.tenant_id].add(row.server_id)
    platform_total = sum(cost.values(), ZERO)
    out = []
    for t in _tenants(t for t, amount in cost.items() if amount):
        share = (cost.get(t.id, ZERO) * 100 / platform_total).quantize(TENTH, rounding=ROUND_HALF_UP) \
            if platform_total else Decimal("0.0")
        out.append(PartnerRow(t, vcpu.get(t.id, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
                              ram.get(t.id, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
                              len(desktops.get(t.id, ())), cost.get(t.id, ZERO), share))
    return PartnerSummary(month, closed, out)


# Month state ---------------------------------------------------------------------------------

def month_state(month: str) -> months.MonthState:
    """Whether ``month`` is closed, and when and by whom."""
    charges.parse_month(month)
    row = db.session.get(BillingMonth, month)
    return months.MonthState(month, row is not None, row.closed_at if row else None, row.closed_by if row else None)

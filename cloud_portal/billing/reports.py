"""Billing figures for pages: totals per tenant, person and server, and month to date with the
month-end forecast (a year's series and the partner summary are in :mod:`billing.summaries`).

Every function returns plain dataclasses and runs a fixed number of queries, however many
tenants, people, servers or intervals there are: statements come from
:func:`months.statement` (closed lines, or the month to date from the ledger) and names are
looked up once per function. Money stays Decimal; months are billing-zone calendar months.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select

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
                                  .order_by(*months.STATEMENT_ORDER))
        return True, [months.StatementRow(month, r.tenant_id, r.owner_id, r.server_id, r.component, r.rate_key,
                                          r.rate_from, r.quantity, r.unit, r.rate, r.amount, r.adjusts_month)
                      for r in rows]
    lines = months.computed_lines(month, server_id=server_id)
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
    return _so_far(server_id=server_id)


def _so_far(*, owner_id: int | None = None, server_id: int | None = None) -> SoFar:
    month = current_month()
    month_end = charges.month_bounds(month, months.billing_zone())[1]
    now = utcnow()
    so_far = charges.total(months.computed_lines(month, until=now, owner_id=owner_id, server_id=server_id))
    forecast = charges.total(months.computed_lines(month, until=month_end, owner_id=owner_id, server_id=server_id))
    return SoFar(month, so_far, forecast, now)


def schedule_savings(server_id: int, month: str | None = None) -> Decimal:
    """What office hours saved a server in ``month`` (default this one) so far: its charges had
    it run through the hours its schedule stopped it (ledger intervals begun by "schedule:stop"),
    less what it was charged. A stopped VM pays for its disk only, so the saving is the vCPU
    and memory of those hours; desktops are priced by the month and save nothing."""
    month = month or current_month()
    zone = months.billing_zone()
    begin, end = charges.month_bounds(month, zone)
    until = min(utcnow(), end)
    u = UsageInterval
    rows = db.session.execute(select(u.owner_id, u.tenant_id, u.kind, u.catalog_key, u.vcpus, u.ram_mib, u.disk_gb,
                                     u.state, u.started_at, u.ended_at, u.cause)
                              .where(u.server_id == server_id, u.started_at < until,
                                     (u.ended_at.is_(None)) | (u.ended_at > begin))).all()
    if not any(row.cause.startswith("schedule:stop") for row in rows):
        return Decimal("0.00")
    charged, unscheduled = [], []
    for r in rows:
        interval = charges.Interval(server_id, r.owner_id, r.tenant_id, r.kind, r.catalog_key, r.vcpus, r.ram_mib,
                                    r.disk_gb, r.state == RUNNING, r.started_at, r.ended_at)
        charged.append(interval)
        stopped_by_schedule = r.cause.startswith("schedule:stop") and r.state != RUNNING
        unscheduled.append(dataclasses.replace(interval, running=True) if stopped_by_schedule else interval)
    prices = ledger.price_versions()
    return (charges.total(charges.month_lines(unscheduled, prices, month, zone, until=until))
            - charges.total(charges.month_lines(charged, prices, month, zone, until=until)))


# A person's month to date -------------------------------------------------------------------

def month_to_date(owner_id: int) -> SoFar:
    """A person's charges this month so far and the month-end forecast: what runs now is
    assumed to keep running to the end of the month (two queries)."""
    return _so_far(owner_id=owner_id)


def forecast(owner_id: int) -> Decimal:
    """A person's month-end forecast (see :func:`month_to_date`)."""
    return month_to_date(owner_id).forecast


def tenants_month_to_date() -> dict[int, Decimal]:
    """Tenant id → this month's charges so far (three queries)."""
    return _by_tenant(months.statement(current_month())[1])


# A year of months ---------------------------------------------------------------------------

def month_state(month: str) -> months.MonthState:
    """Whether ``month`` is closed, and when and by whom."""
    charges.parse_month(month)
    row = db.session.get(BillingMonth, month)
    return months.MonthState(month, row is not None, row.closed_at if row else None, row.closed_by if row else None)

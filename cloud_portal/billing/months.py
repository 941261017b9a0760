"""Monthly charges: month-to-date statements, closing a month, and adjustments to closed months.

Closing writes the month's statement lines once (idempotent) and never changes them: a change
learned later that falls in a closed month becomes an adjustment line in the month being
closed, referring to the closed line it corrects.
"""
from __future__ import annotations

import gc
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import (
    Boolean,
    Date,
    Integer,
    Numeric,
    String,
    and_,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    values,
)

from cloud_portal import bulk
from cloud_portal.accounts.models import User
from cloud_portal.audit import service as audit
from cloud_portal.billing import charges, ledger
from cloud_portal.billing.models import BillingMonth, StatementLine
from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.i18n import _
from cloud_portal.provisioning import models as m
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)


MICRO = Decimal("0.000001")


def billing_zone() -> ZoneInfo:
    return ZoneInfo(str(current_app.config["BILLING_TIMEZONE"]))


def computed_lines(month: str, *, until: datetime | None = None, owner_id: int | None = None,
                   tenant_id: int | None = None, server_id: int | None = None) -> list[charges.Line]:
    """The month's lines worked out from the ledger (open intervals run to ``until``, default
    now, or the month end if sooner); the database sums the intervals, one query per rate
    segment (one, unless a rate changes during the month)."""
    zone = billing_zone()
    prices = ledger.price_versions()
    segments = charges.rate_segments(prices, month, zone, utcnow() if until is None else until)
    usage = [(a, ledger.usage_between(a, b, owner_id=owner_id, tenant_id=tenant_id, server_id=server_id))
             for a, b in segments]
    return charges.lines_from_usage(usage, prices, month, zone)


def is_closed(month: str) -> bool:
    return db.session.get(BillingMonth, month) is not None


# The order a statement is read in: a month's own lines by tenant, person, server, component and
# rate version (as charges.lines_from_usage sorts them), then its adjustments to earlier months.
# Said when reading, not left to the ids: the PostgreSQL close writes lines unsorted (sorting
# ~10^5 wide rows there cost a tenth of the close).
STATEMENT_ORDER = (StatementLine.adjusts_month.is_not(None), StatementLine.tenant_id, StatementLine.owner_id,
                   StatementLine.server_id, StatementLine.component, StatementLine.rate_from, StatementLine.id)


def closed_lines(month: str, *, owner_id: int | None = None, tenant_id: int | None = None) -> list[StatementLine]:
    query = select(StatementLine).where(StatementLine.month == month).order_by(*STATEMENT_ORDER)
    if owner_id is not None:
        query = query.where(StatementLine.owner_id == owner_id)
    if tenant_id is not None:
        query = query.where(StatementLine.tenant_id == tenant_id)
    return list(db.session.scalars(query))


def why_not_closable(month: str) -> str | None:
    """The reason ``month`` cannot be closed yet, or None."""
    start, end = charges.month_bounds(month, billing_zone())
    if utcnow() < end:
        return _("%(month)s has not ended yet; it can be closed from %(when)s.", month=month,
                 when=f"{end.astimezone(billing_zone()):%Y-%m-%d %H:%M %Z}")
    reconciled = db.session.scalar(select(m.ReconcileRun.id).where(m.ReconcileRun.finished_at >= end).limit(1))
    if reconciled is None:
        return _("No reconciliation has completed since %(month)s ended, so changes made outside the portal may be "
                 "missing; run `cloud-portal reconcile` (or wait for the periodic one) and try again.", month=month)
    busy = db.session.scalar(select(m.Job.id).where(
        m.Job.state.in_((m.JOB_QUEUED, m.JOB_RUNNING)), m.Job.created_at >= start, m.Job.created_at < end).limit(1))
    if busy is not None:
        return _("A job that began in %(month)s is still running (%(job)s); wait for it to finish.",
                 month=month, job=busy)
    return None


@dataclass(frozen=True)
class CloseResult:
    month: str
    already_closed: bool
    line_count: int
    total: Decimal
    adjustments: int

    @property
    def lines(self) -> list[StatementLine]:
        """The month's statement lines (loaded when asked for: a month can have tens of thousands)."""
        return closed_lines(self.month)


def close_month(month: str, closed_by: User | str) -> CloseResult:
    """Close ``month``: write its statement lines (and adjustments to earlier closed months). **Commits.**

    ``closed_by`` is the person (web, API) or a label (``"cli"``); the close is audit-logged.
    Idempotent: closing a closed month returns its lines unchanged. Raises InvalidInput saying
    why when the month cannot be closed yet.
    """
    charges.parse_month(month)
    if is_closed(month):
        return CloseResult(month, True, *_count_and_total(month), 0)
    reason = why_not_closable(month)
    if reason:
        raise InvalidInput(reason)
    actor = closed_by if isinstance(closed_by, User) else None
    label = closed_by.email if isinstance(closed_by, User) else closed_by
    cost_centres = dict(db.session.execute(select(Tenant.id, Tenant.cost_centre)).all())
    db.session.add(BillingMonth(month=month, closed_by=label[:254]))
    db.session.flush()
    now = utcnow()
    with _collector_paused():
        if db.session.get_bind().dialect.name == "postgresql":
            _insert_lines_priced_by_database(month, cost_centres, now)
        else:
            _insert_lines([_row(month, line, cost_centres, now) for line in computed_lines(month)])
        adjustments = _adjust_earlier_months(month, cost_centres)
    count, total = _count_and_total(month)
    audit.record(actor, "billing.close_month", "billing_month", month, tenant_id=None, actor_label=label,
                 after={"lines": count, "total_gbp": str(total), "adjustments": adjustments})
    db.session.commit()
    log.info("billing month %s closed by %s (%d lines, %d adjustments)", month, label, count, adjustments)
    return CloseResult(month, False, count, total, adjustments)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Closing a month makes ~10^5 short-lived objects (none in reference cycles); with the
    collector on, its full passes over the whole app's heap cost more than the arithmetic
    itself (measured: the lines took 2–3× as long). Back on as soon as the lines are written."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _count_and_total(month: str) -> tuple[int, Decimal]:
    count, total = db.session.execute(select(func.count(StatementLine.id), func.sum(StatementLine.amount))
                                      .where(StatementLine.month == month)).one()
    return int(count), Decimal(total or 0).quantize(charges.PENNY)


def _row(month: str, line: charges.Line, cost_centres: dict[int, str], created_at: datetime, *,
         amount: Decimal | None = None, quantity: Decimal | None = None, adjusts: int | None = None,
         adjusts_month: str | None = None) -> tuple[object, ...]:
    """A statement line's values in the order of ``_LINE_COLUMNS`` (written in bulk: a month can
    have a hundred thousand)."""
    key = line.key
    return (month, key.tenant_id, cost_centres.get(key.tenant_id, ""), key.owner_id, key.server_id, key.component,
            key.rate_key, key.rate_from, (line.quantity if quantity is None else quantity).quantize(MICRO),
            line.unit, line.rate, line.amount if amount is None else amount, adjusts,
            adjusts_month, created_at)


_LINE_COLUMNS = ("month", "tenant_id", "cost_centre", "owner_id", "server_id", "component", "rate_key", "rate_from",
                 "quantity", "unit", "rate", "amount", "adjusts_line_id", "adjusts_month", "created_at")


def _insert_lines(rows: list[tuple[object, ...]]) -> None:
    bulk.insert_rows(StatementLine.__table__, _LINE_COLUMNS, rows)


def _insert_lines_priced_by_database(month: str, cost_centres: dict[int, str], created_at: datetime) -> None:
    """PostgreSQL: write the month's lines priced by the database (the usage sums into a
    temporary table, then one INSERT … SELECT).

    The same lines as :func:`computed_lines` (tests compare them line by line): the same usage
    sums (:func:`ledger.usage_query`, one per rate segment), the same parts
    (:func:`charges.parts_at`), and the same rounding in exact numerics — quantities half-even
    to six places as ``Decimal.quantize`` does, amounts half-up to pence as
    :func:`charges.pence_half_up` does. Closing a month of a million intervals this way never
    brings its ~10^5 lines to Python and back (measured: 2.7 s → see bench/billing.py).
    """
    zone = billing_zone()
    prices = ledger.price_versions()
    month_start, month_end = charges.month_bounds(month, zone)
    month_micros = charges.micros(month_start, month_end)
    spans = charges.price_spans(prices, zone)
    part_rows, usage_queries, params = [], [], {}
    segments = charges.rate_segments(prices, month, zone, utcnow())
    for index, (begin, end) in enumerate(segments):
        vm_parts, desktop_parts = charges.parts_at(spans, begin, month_micros)
        # A VM's parts match usage whose price key is "" (ledger.usage_query), a desktop's its catalog
        # key: one equality the database can hash-join on.
        for part, desktop_key in [(p, "") for p in vm_parts] + [(p, k) for k, p in desktop_parts.items()]:
            numerator, denominator = part.version.price.as_integer_ratio()
            part_rows.append((index, part.component, part.rate_key, part.unit, part.version.effective_from,
                              part.version.price, numerator, denominator, part.per_unit, part.charged_on,
                              part.only_if_ran, desktop_key))
        query, segment_params = ledger.usage_query(begin, end, segment=index)
        usage_queries.append(query)
        params.update(segment_params)
    if not part_rows or not usage_queries:
        return
    # The usage sums go to a temporary table first: an INSERT … SELECT never runs in parallel, a
    # CREATE TABLE … AS can, and summing the month's intervals is the half of this close that
    # parallel workers speed up. The planner prices passing each worker's partial sums on too
    # dearly (there are nearly as many as rows) and keeps to one process unless told otherwise.
    db.session.execute(text("SET LOCAL parallel_tuple_cost = 0.001"))
    # The default 4 MB of working memory sends the sums (and sorts) to disk; for this transaction
    # only, let them stay in memory (measured: ~20 % of the close).
    db.session.execute(text("SET LOCAL work_mem = '64MB'"))
    # (DDL takes no bound parameters: the values, all integers, are written into the statement.)
    month_usage = union_all(*usage_queries).params(params).into("month_usage", temporary=True)
    db.session.execute(month_usage)
    usage = month_usage.table
    parts = values(column("segment", Integer), column("component", String), column("rate_key", String),
                   column("unit", String), column("rate_from", Date), column("rate", Numeric),
                   column("numerator", Numeric), column("denominator", Numeric), column("per_unit", Numeric),
                   column("charged_on", String), column("only_if_ran", Boolean), column("desktop_key", String),
                   name="parts").data(part_rows)
    u, p = usage.c, parts.c
    applies = and_(p.segment == u.segment, p.desktop_key == u.price_key,
                   or_(p.only_if_ran.is_(False), u.running_micros > 0))
    charged = case(*[(p.charged_on == name, cast(getattr(u, name), Numeric))
                     for name in ("micros", "disk_gb_micros", "vcpu_micros", "ram_mib_micros")])
    line_columns = (u.owner_id, u.server_id, u.tenant_id, p.component, p.rate_key, p.rate_from, p.unit, p.rate,
                    p.numerator, p.denominator, p.per_unit)
    if len(segments) == 1:  # the usual month: one row per line already
        lines = select(*line_columns, charged.label("used")).select_from(usage.join(parts, applies)).subquery("lines")
    else:  # a rate changed: a version's line sums its segments (those of other rates' changes)
        lines = (select(*line_columns, func.sum(charged).label("used")).select_from(usage.join(parts, applies))
                 .group_by(*line_columns)).subquery("lines")
    # Each line's whole millionths of a unit, divided once: PostgreSQL repeats an expression as often
    # as it is written, and numeric division is this statement's dearest step (OFFSET 0 keeps the
    # subquery from being merged into the outer one, which would write it out four times again).
    c = lines.c
    millionths = c.used * 1_000_000
    lines = select(lines, func.div(millionths, c.per_unit).label("quotient")).offset(0).subquery("divided")
    c = lines.c
    quotient = c.quotient
    # Quantity: used / per_unit to six places, half-even (Decimal's default, as _row quantizes).
    twice_rest = 2 * (c.used * 1_000_000 - quotient * c.per_unit)
    quantity = (quotient + case((twice_rest > c.per_unit, 1), (twice_rest == c.per_unit, func.mod(quotient, 2)),
                                else_=0)) * literal(MICRO)  # × 0.000001: exact, and dearer as a division
    # Amount: used / per_unit × numerator / denominator pounds, half-up to pence (used ≥ 0).
    scale = c.per_unit * c.denominator
    amount = func.div(200 * c.used * c.numerator + scale, 2 * scale) * literal(charges.PENNY)
    cost_centre = case(cost_centres, value=c.tenant_id, else_="") if cost_centres else literal("")
    rows = (select(literal(month, String()), c.tenant_id, cost_centre, c.owner_id,
                   c.server_id, c.component, c.rate_key, c.rate_from, quantity, c.unit, c.rate, amount,
                   literal(None, Integer()), literal(None, String()), literal(created_at, UTCDateTime()))
            .select_from(lines))  # unsorted: readers use STATEMENT_ORDER
    db.session.execute(insert(StatementLine.__table__).from_select(list(_LINE_COLUMNS), rows), params)
    db.session.execute(text("DROP TABLE month_usage"))


def _line_key(row: StatementLine) -> charges.LineKey:
    return charges.LineKey(row.owner_id, row.server_id, row.tenant_id, row.component, row.rate_key, row.rate_from)


def _adjust_earlier_months(month: str, cost_centres: dict[int, str]) -> int:
    """For every earlier closed month, charge (or credit) what the ledger now says it should have been."""
    written = 0
    for earlier in db.session.scalars(select(BillingMonth.month).where(BillingMonth.month < month)
                                      .order_by(BillingMonth.month)):
        originals = {_line_key(r): r for r in closed_lines(earlier) if r.adjusts_month is None}
        billed: dict[charges.LineKey, Decimal] = defaultdict(Decimal)
        for row in originals.values():
            billed[_line_key(row)] += row.amount
        for row in db.session.scalars(select(StatementLine).where(StatementLine.adjusts_month == earlier)):
            billed[_line_key(row)] += row.amount
        for line in computed_lines(earlier):
            delta = line.amount - billed.pop(line.key, Decimal("0.00"))
            if delta:
                original = originals.get(line.key)
                _insert_lines([_row(month, line, cost_centres, utcnow(), amount=delta, quantity=line.quantity,
                                    adjusts=original.id if original else None, adjusts_month=earlier)])
                written += 1
        for key, amount in billed.items():  # billed then, gone from the ledger now: credit it
            if amount:
                original = originals.get(key)
                credit = charges.Line(key, Decimal(0), original.unit if original else "",
                                      original.rate if original else Decimal(0), -amount)
                _insert_lines([_row(month, credit, cost_centres, utcnow(), amount=-amount,
                                    adjusts=original.id if original else None, adjusts_month=earlier)])
                written += 1
    return written


@dataclass(frozen=True)
class StatementRow:
    """One line of a statement as pages, exports and the CLI show it (closed or month to date)."""

    month: str
    tenant_id: int
    owner_id: int
    server_id: int
    component: str
    rate_key: str
    rate_from: date
    quantity: Decimal
    unit: str
    rate: Decimal
    amount: Decimal
    adjusts_month: str | None = None


def statement(month: str, *, owner_id: int | None = None,
              tenant_id: int | None = None) -> tuple[bool, list[StatementRow]]:
    """(closed?, lines) of ``month`` for a person or a tenant (or everyone): the final lines of a
    closed month, else the month to date worked out from the ledger."""
    charges.parse_month(month)
    if is_closed(month):
        return True, [StatementRow(month, r.tenant_id, r.owner_id, r.server_id, r.component, r.rate_key, r.rate_from,
                                   r.quantity, r.unit, r.rate, r.amount, r.adjusts_month)
                      for r in closed_lines(month, owner_id=owner_id, tenant_id=tenant_id)]
    return False, [StatementRow(month, k.tenant_id, k.owner_id, k.server_id, k.component, k.rate_key, k.rate_from,
                                line.quantity, line.unit, line.rate, line.amount)
                   for line in computed_lines(month, owner_id=owner_id, tenant_id=tenant_id) for k in [line.key]]


@dataclass(frozen=True)
class MonthState:
    month: str
    closed: bool
    closed_at: datetime | None
    closed_by: str | None


def recent_months(count: int = 12) -> list[MonthState]:
    """The current month and the ``count - 1`` before it, newest first, with whether each is closed."""
    month = charges.month_of(utcnow(), billing_zone())
    wanted = [month]
    for _step in range(count - 1):
        wanted.append(charges.previous_month(wanted[-1]))
    closed = {row.month: row for row in db.session.scalars(select(BillingMonth).where(BillingMonth.month.in_(wanted)))}
    return [MonthState(mm, mm in closed, closed[mm].closed_at if mm in closed else None,
                       closed[mm].closed_by if mm in closed else None) for mm in wanted]


def totals_by_tenant(month: str, tenant_id: int | None = None) -> dict[int, Decimal]:
    """Tenant id → the month's total (closed lines, or month to date)."""
    totals: dict[int, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for row in statement(month, tenant_id=tenant_id)[1]:
        totals[row.tenant_id] += row.amount
    return dict(totals)

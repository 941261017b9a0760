"""Billing summaries over time and across partners: a year of monthly totals per tenant (for the
finance chart) and the per-partner summary of use, cost and share of the platform.

Like :mod:`billing.reports`, each function runs a fixed number of queries.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from cloud_portal.billing import charges, months
from cloud_portal.billing.models import BillingMonth, StatementLine
from cloud_portal.billing.reports import TENTH, ZERO, TenantRef, _tenants
from cloud_portal.extensions import db


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
    for month in open_months:  # one query each (a rate change mid-month adds one)
        for line in months.computed_lines(month):
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


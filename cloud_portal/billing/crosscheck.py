"""The Nova cross-check: the ledger's server-hours against Nova's own usage report.

Nova counts the hours a server existed (running or not), from launch to deletion, so the
ledger's side is the length of all its intervals in the month. A difference over 0.1 hour for
a server is listed for finance and recorded as a reconciliation finding.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.billing import charges, ledger
from cloud_portal.billing.months import billing_zone
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.findings import record_finding
from cloud_portal.tenants.cloud_sync import project_id
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

TOLERANCE_HOURS = Decimal("0.1")
CENTI = Decimal("0.01")
FINDING_USAGE_MISMATCH = "usage_mismatch"


@dataclass(frozen=True)
class Difference:
    tenant_slug: str
    server_name: str
    openstack_id: str
    ledger_hours: Decimal
    nova_hours: Decimal

    @property
    def hours(self) -> Decimal:
        return self.ledger_hours - self.nova_hours


def cross_check(ctx: CloudContext, month: str) -> list[Difference]:
    """Compare each member tenant's servers for ``month`` with Nova; record findings. Commits."""
    start, end = charges.month_bounds(month, billing_zone())
    until = min(end, utcnow())
    differences: list[Difference] = []
    for tenant in db.session.scalars(select(Tenant).where(Tenant.is_platform.is_(False), Tenant.active.is_(True))):
        project = project_id(ctx, tenant)
        if project is None:
            continue
        hours: dict[int, Decimal] = defaultdict(Decimal)
        for used in ledger.usage_between(start, until, tenant_id=tenant.id):
            hours[used.server_id] += Decimal(used.micros) / charges.MICROS_PER_HOUR
        servers = {s.id: s for s in db.session.scalars(select(m.Server).where(m.Server.id.in_(list(hours))))}
        nova = ctx.cloud.server_usage(project, start, until)
        known = {s.openstack_id for s in servers.values()}
        for server_id, ledger_hours in hours.items():
            server = servers[server_id]
            nova_hours = nova[server.openstack_id].hours if server.openstack_id in nova else Decimal(0)
            if abs(ledger_hours - nova_hours) > TOLERANCE_HOURS:
                differences.append(Difference(tenant.slug, server.name, server.openstack_id or "",
                                              ledger_hours.quantize(CENTI), nova_hours.quantize(CENTI)))
        for openstack_id, usage in nova.items():
            if openstack_id not in known and usage.hours > TOLERANCE_HOURS and _is_ours(openstack_id):
                differences.append(Difference(tenant.slug, "(not in the ledger)", openstack_id, Decimal(0),
                                              usage.hours.quantize(CENTI)))
    for diff in differences:
        record_finding(FINDING_USAGE_MISMATCH, f"{month}:{diff.openstack_id}"[:64],
                       f"{month}: {diff.server_name} ({diff.tenant_slug}): the ledger has {diff.ledger_hours} h, "
                       f"Nova {diff.nova_hours} h", None)
    db.session.commit()
    return differences


def _is_ours(openstack_id: str) -> bool:
    """Servers the portal made (and so should have billed); unknown ones are reconciliation's business."""
    return db.session.scalar(select(m.Server.id).where(m.Server.openstack_id == openstack_id)) is not None


def recorded(month: str) -> list[m.ReconcileFinding]:
    """The differences recorded for ``month`` by earlier cross-checks, newest first."""
    return list(db.session.scalars(select(m.ReconcileFinding).where(
        m.ReconcileFinding.kind == FINDING_USAGE_MISMATCH,
        m.ReconcileFinding.openstack_id.like(f"{month}:%")).order_by(m.ReconcileFinding.found_at.desc())))


def run_for_month(month: str) -> list[Difference]:
    """Cross-check ``month`` against the configured cloud (ProvisioningFailed when there is none)."""
    from cloud_portal.adapters.cloud import cloud
    charges.parse_month(month)
    return cross_check(cloud.required(), month)

"""Reading the catalog and the rate card (written by tenants sync)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from cloud_portal.catalog.models import DesktopTemplate, Image, Rate, VmSize
from cloud_portal.extensions import db

HOURS_PER_MONTH = Decimal(730)  # the usual cloud convention: 8,760 hours / 12


@dataclass(frozen=True)
class CatalogView:
    vm_sizes: list[VmSize]
    images: list[Image]
    desktops: list[DesktopTemplate]
    rates: dict[str, Decimal]


def get_catalog() -> CatalogView:
    """Active catalog entries, smallest first, and the rate card."""
    return CatalogView(
        vm_sizes=list(db.session.scalars(select(VmSize).where(VmSize.active.is_(True))
                                         .order_by(VmSize.vcpus, VmSize.ram_mib))),
        images=list(db.session.scalars(select(Image).where(Image.active.is_(True)).order_by(Image.name))),
        desktops=list(db.session.scalars(select(DesktopTemplate).where(DesktopTemplate.active.is_(True))
                                         .order_by(DesktopTemplate.monthly_price))),
        rates={r.key: r.price for r in db.session.scalars(select(Rate))},
    )


def vm_monthly_estimate(size: VmSize, rates: dict[str, Decimal]) -> Decimal:
    """Estimated GBP a month for a VM running all month, rounded half-up to pence."""
    hourly = size.vcpus * rates.get("vcpu_hour", Decimal(0)) + \
        (Decimal(size.ram_mib) / 1024) * rates.get("ram_gb_hour", Decimal(0))
    total = hourly * HOURS_PER_MONTH + size.disk_gb * rates.get("disk_gb_month", Decimal(0))
    return total.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")

"""Reading the catalog and the rate card (written by tenants sync)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from flask import g, has_request_context
from sqlalchemy import select

from cloud_portal.catalog.models import DesktopTemplate, Image, Rate, RateVersion, VmSize
from cloud_portal.extensions import db
from cloud_portal.timeutil import utcnow

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
        rates=current_rates(),
    )


def current_desktop_prices() -> dict[str, Decimal]:
    """Desktop template key → its monthly price today (from the dated price versions)."""
    today = utcnow().date()
    out = {}
    for key, versions in rate_versions().items():
        in_effect = [price for since, price in versions if since <= today]
        if key.startswith("desktop:") and in_effect:
            out[key.removeprefix("desktop:")] = in_effect[-1]
    return out


def current_rates() -> dict[str, Decimal]:
    """Each rate's price today: the newest version in effect (the base rate card without versions)."""
    rates = {r.key: r.price for r in db.session.scalars(select(Rate))}
    today = utcnow().date()
    for key, versions in rate_versions().items():
        in_effect = [price for since, price in versions if since <= today]
        if in_effect and not key.startswith("desktop:"):
            rates[key] = in_effect[-1]
    return rates


def vm_monthly_estimate(size: VmSize, rates: dict[str, Decimal]) -> Decimal:
    """Estimated GBP a month for a VM running all month, rounded half-up to pence."""
    hourly = size.vcpus * rates.get("vcpu_hour", Decimal(0)) + \
        (Decimal(size.ram_mib) / 1024) * rates.get("ram_gb_hour", Decimal(0))
    total = hourly * HOURS_PER_MONTH + size.disk_gb * rates.get("disk_gb_month", Decimal(0))
    return total.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


#: Where a request keeps its copy of the rate versions on ``flask.g`` (web/__init__ clears it at
#: the start of each request, as tests and scripts may run several requests in one app context).
RATES_CACHE_KEY = "rate_versions"


def rate_versions() -> dict[str, list[tuple[date, Decimal]]]:
    """Rate key (vcpu_hour, ram_gb_hour, disk_gb_month, desktop:<template>) → [(from, price)] by date.

    Read once per web request (a finance page works out a dozen months, each wanting the rates);
    outside a request (jobs, the CLI, tests) read each time. Callers must not change the result.
    """
    cached = g.get(RATES_CACHE_KEY) if has_request_context() else None
    if cached is not None:
        return cached
    out: dict[str, list[tuple[date, Decimal]]] = {}
    for row in db.session.scalars(select(RateVersion).order_by(RateVersion.key, RateVersion.effective_from)):
        out.setdefault(row.key, []).append((row.effective_from, row.price))
    if has_request_context():
        setattr(g, RATES_CACHE_KEY, out)
    return out


def replace_rate_versions(wanted: dict[tuple[str, date], Decimal]) -> list[str]:
    """Make the stored rate versions exactly ``wanted`` ((key, from) → price); returns what changed.

    Part of ``tenants sync`` (the caller audits and commits). A changed past price changes
    open months at once and closed months through adjustment lines when the next month closes.
    """
    changes: list[str] = []
    if has_request_context():
        g.pop(RATES_CACHE_KEY, None)  # the request's copy is stale from here on
    existing = {(r.key, r.effective_from): r for r in db.session.scalars(select(RateVersion))}
    for (key, since), price in wanted.items():
        row = existing.get((key, since))
        if row is None:
            db.session.add(RateVersion(key=key, effective_from=since, price=price))
            changes.append(f"rate {key} from {since}: {price}")
        elif row.price != price:
            changes.append(f"rate {key} from {since}: {row.price} → {price}")
            row.price = price
    for (key, since), row in existing.items():
        if (key, since) not in wanted:
            db.session.delete(row)
            changes.append(f"rate {key} from {since} removed")
    return changes

"""Applying tenants.yaml to the database, idempotently, and reading tenants."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cloud_portal.audit import service as audit
from cloud_portal.catalog.models import DesktopTemplate, Image, Rate, VmSize
from cloud_portal.catalog.service import replace_rate_versions
from cloud_portal.extensions import db
from cloud_portal.quotas.limits import apply_file_limits
from cloud_portal.quotas.models import SCOPE_PER_USER, SCOPE_TENANT
from cloud_portal.tenants.config_file import SINCE_ALWAYS, TenantsFile
from cloud_portal.tenants.models import PLATFORM_SLUG, DataHall, Tenant

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a sync changed; empty lists mean the database already matched the file."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated)

    def lines(self) -> list[str]:
        out = [f"created {x}" for x in self.created] + [f"updated {x}" for x in self.updated]
        out += [f"deactivated {x}" for x in self.deactivated]
        return out or ["nothing to change: the database already matches the file"]


def _apply(obj: Any, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Set attributes that differ; return {name: (old, new)} of what changed."""
    changes = {}
    for key, value in values.items():
        old = getattr(obj, key)
        if old != value:
            changes[key] = (old, value)
            setattr(obj, key, value)
    return changes


def _jsonable(changes: dict[str, tuple[Any, Any]], side: int) -> dict[str, Any]:
    return {k: (str(v[side]) if v[side] is not None and not isinstance(v[side], (int, list, bool, dict)) else v[side])
            for k, v in changes.items()}


def _sync_rows(model: Any, key_attr: str, wanted: dict[str, dict[str, Any]], label: str,
               report: SyncReport, actor: User | None) -> None:
    existing = {getattr(row, key_attr): row for row in db.session.scalars(select(model))}
    for key, values in wanted.items():
        row = existing.get(key)
        if row is None:
            row = model(**{key_attr: key}, **values, active=True)
            db.session.add(row)
            report.created.append(f"{label} {key}")
            audit.record(actor, f"{label}.create", label, key, tenant_id=None, after=_jsonable(
                {k: (None, v) for k, v in values.items()}, 1))
            continue
        changes = _apply(row, {**values, "active": True})
        if changes:
            report.updated.append(f"{label} {key}")
            audit.record(actor, f"{label}.update", label, key, tenant_id=None,
                         before=_jsonable(changes, 0), after=_jsonable(changes, 1))
    for key, row in existing.items():
        if key not in wanted and row.active:
            row.active = False
            report.deactivated.append(f"{label} {key}")
            audit.record(actor, f"{label}.deactivate", label, key, tenant_id=None)


def _sync_quota_limits(tenant: Tenant, scope: str, limits: dict[str, int | None],
                       report: SyncReport, actor: User | None) -> None:
    if apply_file_limits(tenant, scope, limits, actor):
        report.updated.append(f"{scope} quotas of {tenant.slug}")


def sync_tenants(doc: TenantsFile, actor: User | None = None) -> SyncReport:
    """Make the database match tenants.yaml: tenants, quotas, catalog and rates. Idempotent.

    Tenants and catalog entries missing from the file are deactivated, not deleted, because
    servers, users and bills still refer to them.  The caller commits.
    """
    report = SyncReport()
    existing = {t.slug: t for t in db.session.scalars(select(Tenant))}
    wanted: dict[str, dict[str, Any]] = {
        PLATFORM_SLUG: dict(name_en=doc.platform.name_en, name_cy=doc.platform.name_cy,
                            cost_centre=doc.platform.cost_centre, allowed_halls=[], is_platform=True)}
    for entry in doc.tenants:
        wanted[entry.slug] = dict(
            name_en=entry.name_en, name_cy=entry.name_cy, cost_centre=entry.cost_centre,
            allowed_halls=list(entry.data_halls), is_platform=False,
            approval_monthly_cost_over=entry.approval.monthly_cost_over,
            approval_vcpus_over=entry.approval.vcpus_over,
            budget_monthly=entry.budget.monthly if entry.budget else None,
            over_budget=entry.budget.over_budget if entry.budget else "warn",
            sso=entry.sso.model_dump() if entry.sso else None, password_sign_in=entry.password_sign_in,
            office_hours=entry.office_hours.model_dump() if entry.office_hours else None,
            lease_max_days=entry.lease.max_days if entry.lease else None,
            lease_required_for=list(entry.lease.required_for) if entry.lease else [])
    for slug, values in wanted.items():
        tenant = existing.get(slug)
        if tenant is None:
            tenant = Tenant(slug=slug, **values, active=True)
            db.session.add(tenant)
            db.session.flush()
            report.created.append(f"tenant {slug}")
            audit.record(actor, "tenant.create", "tenant", slug, tenant_id=tenant.id,
                         after={k: str(v) if not isinstance(v, (list, bool)) else v for k, v in values.items()})
        else:
            changes = _apply(tenant, {**values, "active": True})
            if changes:
                report.updated.append(f"tenant {slug}")
                audit.record(actor, "tenant.update", "tenant", slug, tenant_id=tenant.id,
                             before=_jsonable(changes, 0), after=_jsonable(changes, 1))
        existing[slug] = tenant
    for slug, tenant in existing.items():
        if slug not in wanted and tenant.active:
            tenant.active = False
            report.deactivated.append(f"tenant {slug}")
            audit.record(actor, "tenant.deactivate", "tenant", slug, tenant_id=tenant.id)
    for entry in doc.tenants:
        tenant = existing[entry.slug]
        _sync_quota_limits(tenant, SCOPE_TENANT, entry.quotas.model_dump(), report, actor)
        _sync_quota_limits(tenant, SCOPE_PER_USER, entry.per_user_quotas.model_dump(), report, actor)

    _sync_rows(DataHall, "key", {h.key: dict(name_en=h.name_en, name_cy=h.name_cy) for h in doc.data_halls},
               "data_hall", report, actor)
    spec = ("name_en", "name_cy", "flavor", "vcpus", "ram_mib", "disk_gb")
    _sync_rows(VmSize, "key", {s.key: {k: getattr(s, k) for k in spec} for s in doc.catalog.vm_sizes},
               "vm_size", report, actor)
    _sync_rows(Image, "key", {i.key: dict(name=i.name, name_cy=i.name_cy, os_image=i.os_image,
                                          min_disk_gb=i.min_disk_gb, kind=i.kind) for i in doc.catalog.images},
               "image", report, actor)
    _sync_rows(DesktopTemplate, "key", {
        d.key: {**{k: getattr(d, k) for k in spec}, "image_key": d.image, "monthly_price": d.monthly_price}
        for d in doc.catalog.desktops}, "desktop_template", report, actor)
    rates = {"vcpu_hour": doc.rate_card.vcpu_hour, "ram_gb_hour": doc.rate_card.ram_gb_hour,
             "disk_gb_month": doc.rate_card.disk_gb_month}
    existing_rates = {r.key: r for r in db.session.scalars(select(Rate))}
    for key, price in rates.items():
        rate = existing_rates.get(key)
        if rate is None:
            db.session.add(Rate(key=key, price=price))
            report.created.append(f"rate {key}")
            audit.record(actor, "rate.create", "rate", key, tenant_id=None, after={"price": str(price)})
        elif rate.price != price:
            audit.record(actor, "rate.update", "rate", key, tenant_id=None,
                         before={"price": str(rate.price)}, after={"price": str(price)})
            rate.price = price
            report.updated.append(f"rate {key}")
    for change in replace_rate_versions(_rate_versions_in(doc)):
        report.updated.append(change)
        audit.record(actor, "rate.version", "rate", change.split(" from ")[0].removeprefix("rate "), tenant_id=None,
                     after={"change": change})
    db.session.flush()
    log.info("tenants sync: %s", "; ".join(report.lines()))
    return report


def _rate_versions_in(doc: TenantsFile) -> dict[tuple[str, date], Decimal]:
    """Every dated price in the file: the rate card's versions and each desktop's price changes."""
    wanted: dict[tuple[str, date], Decimal] = {}
    for version in doc.rate_card.versions():
        for key in ("vcpu_hour", "ram_gb_hour", "disk_gb_month"):
            wanted[(key, version.effective_from)] = getattr(version, key)
    for desktop in doc.catalog.desktops:
        wanted[(f"desktop:{desktop.key}", SINCE_ALWAYS)] = desktop.monthly_price
        for change in desktop.price_changes:
            wanted[(f"desktop:{desktop.key}", change.effective_from)] = change.monthly_price
    return wanted


def get_tenant_by_slug(slug: str) -> Tenant | None:
    return db.session.scalar(select(Tenant).where(Tenant.slug == slug))


def hall_names(locale: str) -> dict[str, str]:
    """Data hall key → name in the given language."""
    return {h.key: h.display_name(locale) for h in db.session.scalars(select(DataHall))}


def list_tenants(include_platform: bool = True) -> list[Tenant]:
    query = select(Tenant).where(Tenant.active.is_(True)).order_by(Tenant.is_platform.desc(), Tenant.name_en)
    if not include_platform:
        query = query.where(Tenant.is_platform.is_(False))
    return list(db.session.scalars(query))

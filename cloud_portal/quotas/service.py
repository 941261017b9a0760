"""Quota limits (reading; reservations and enforcement come with provisioning)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from cloud_portal.extensions import db
from cloud_portal.quotas.models import QUOTA_RESOURCES, SCOPE_PER_USER, SCOPE_TENANT, QuotaLimit


@dataclass
class TenantLimits:
    """Limits of one tenant: the whole tenant, and each person in it (None = no per-person limit)."""

    tenant: dict[str, int] = field(default_factory=dict)
    per_user: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(QUOTA_RESOURCES))


def limits_for_tenants(tenant_ids: list[int]) -> dict[int, TenantLimits]:
    """Limits of several tenants in one query (list pages must not query per row)."""
    result: dict[int, TenantLimits] = defaultdict(TenantLimits)
    if not tenant_ids:
        return {}
    for row in db.session.scalars(select(QuotaLimit).where(QuotaLimit.tenant_id.in_(tenant_ids))):
        limits = result[row.tenant_id]
        if row.scope == SCOPE_TENANT:
            limits.tenant[row.resource] = row.limit
        elif row.scope == SCOPE_PER_USER:
            limits.per_user[row.resource] = row.limit
    return {tid: result[tid] for tid in tenant_ids}


def limits_for_tenant(tenant_id: int) -> TenantLimits:
    return limits_for_tenants([tenant_id])[tenant_id]

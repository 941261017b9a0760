"""Quota limits: per tenant, and optional per-user limits inside a tenant."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud_portal.extensions import db

#: Resources that quotas limit, with their units.
QUOTA_RESOURCES: dict[str, str] = {
    "instances": "servers (VMs and desktops)",
    "vcpus": "vCPUs",
    "ram_mib": "RAM in MiB",
    "disk_gb": "disk in GB",
    "desktops": "virtual desktops",
}
SCOPE_TENANT = "tenant"
SCOPE_PER_USER = "per_user"


class QuotaLimit(db.Model):  # type: ignore[name-defined]
    __tablename__ = "quota_limits"
    __table_args__ = (UniqueConstraint("tenant_id", "scope", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    #: "tenant" (the whole tenant) or "per_user" (each member of the tenant).
    scope: Mapped[str] = mapped_column(String(16))
    #: One of QUOTA_RESOURCES.
    resource: Mapped[str] = mapped_column(String(32))
    #: Limit in the resource's unit (RAM in MiB, disk in GB, others a count).
    limit: Mapped[int] = mapped_column(Integer)

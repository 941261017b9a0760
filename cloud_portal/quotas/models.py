"""Quota limits (per tenant, and optional per-user limits inside a tenant) and reservations."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud_portal.extensions import db
from cloud_portal.timeutil import UTCDateTime, utcnow

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User
    from cloud_portal.tenants.models import Tenant

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


#: Reservation states. "open": held for a request not yet built; "consumed": turned into a
#: live resource; "released": given back (failure, rejection, cancellation, deletion).
RESERVATION_OPEN = "open"
RESERVATION_CONSUMED = "consumed"
RESERVATION_RELEASED = "released"
RESERVATION_STATES = (RESERVATION_OPEN, RESERVATION_CONSUMED, RESERVATION_RELEASED)


class QuotaReservation(db.Model):  # type: ignore[name-defined]
    """Resources held against a tenant's (and a person's) quota.

    Created by :func:`cloud_portal.quotas.service.reserve` in the same transaction as the quota
    check, so the check and the hold can never be split by a concurrent request.
    """

    __tablename__ = "quota_reservations"
    __table_args__ = (
        # Usage sums read a tenant's (or a person's) reservations in the states that count; the
        # amounts are in the index, so the sums never read the table's rows.
        Index("ix_quota_reservations_tenant_state", "tenant_id", "state", "user_id", "instances", "vcpus",
              "ram_mib", "disk_gb", "desktops"),
        Index("ix_quota_reservations_user_state", "user_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    #: The person the resources are for (per-user limits count against them).
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: What the hold is for, free text such as "request:123"; shown in audit and admin pages.
    purpose: Mapped[str] = mapped_column(String(120))
    #: Servers (VMs and desktops; a desktop counts as one instance and one desktop).
    instances: Mapped[int] = mapped_column(Integer, default=0)
    #: vCPUs.
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    #: RAM in MiB.
    ram_mib: Mapped[int] = mapped_column(Integer, default=0)
    #: Disk in GB.
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    #: Virtual desktops.
    desktops: Mapped[int] = mapped_column(Integer, default=0)
    #: One of RESERVATION_STATES.
    state: Mapped[str] = mapped_column(String(16), default=RESERVATION_OPEN)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the reservation was consumed (became a live resource); None while open.
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Why it was released, e.g. "request rejected", "server deleted".
    release_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)

    def amounts(self) -> dict[str, int]:
        """Resource → amount held, in the units of QUOTA_RESOURCES."""
        return {resource: getattr(self, resource) for resource in QUOTA_RESOURCES}

    def __repr__(self) -> str:
        return f"<QuotaReservation {self.id} {self.purpose} {self.state}>"


class QuotaUsage(db.Model):  # type: ignore[name-defined]
    """What one person holds in one tenant: the sum of their reservations in the states that count
    (open and consumed), kept current by every reservation change in
    :mod:`cloud_portal.quotas.reservations`.

    Usage is read from these rows (one per person who holds anything) instead of summing every
    reservation, so a quota check or the quotas overview costs the same at 20,000 servers as at
    100. :func:`cloud_portal.quotas.usage.recount_usage` rebuilds them from the reservations.
    """

    __tablename__ = "quota_usage"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    ram_mib: Mapped[int] = mapped_column(Integer, default=0)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    desktops: Mapped[int] = mapped_column(Integer, default=0)


#: States of a quota-increase request.
INCREASE_OPEN = "open"
INCREASE_APPROVED = "approved"
INCREASE_DECLINED = "declined"
INCREASE_STATES = (INCREASE_OPEN, INCREASE_APPROVED, INCREASE_DECLINED)


class QuotaIncreaseRequest(db.Model):  # type: ignore[name-defined]
    """A tenant member asks a platform admin for more of the tenant's quota.

    The amounts are *extra* room on top of the tenant limit in force when the request is
    decided (None = nothing more of that resource); approving raises each named tenant limit by
    that much (see :func:`cloud_portal.quotas.service.approve_increase`).
    """

    __tablename__ = "quota_increase_requests"
    __table_args__ = (Index("ix_quota_increase_requests_state", "state", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: Extra servers (VMs and desktops) wanted.
    instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Extra vCPUs wanted.
    vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Extra RAM wanted, in MiB.
    ram_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Extra disk wanted, in GB.
    disk_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Extra virtual desktops wanted.
    desktops: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Why the requester needs more (shown to the platform admins).
    reason: Mapped[str] = mapped_column(String(1000))
    #: One of INCREASE_STATES.
    state: Mapped[str] = mapped_column(String(16), default=INCREASE_OPEN)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The platform admin's reason (required when declining), shown to the requester.
    decision_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="joined")
    requester: Mapped[User] = relationship(foreign_keys=[requester_id], lazy="joined")
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id], lazy="joined")

    def wanted(self) -> dict[str, int]:
        """Resource → extra amount wanted (resources not asked for are left out)."""
        return {r: getattr(self, r) for r in QUOTA_RESOURCES if getattr(self, r)}

    def __repr__(self) -> str:
        return f"<QuotaIncreaseRequest {self.id} {self.state}>"

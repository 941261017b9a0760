"""Member organisations (tenants) and the platform itself."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, Numeric, String
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column

from cloud_portal.extensions import db
from cloud_portal.timeutil import UTCDateTime, utcnow

PLATFORM_SLUG = "platform"


class Tenant(db.Model):  # type: ignore[name-defined]
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Short lowercase identifier from tenants.yaml; also the OpenStack project name suffix.
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name_en: Mapped[str] = mapped_column(String(200))
    name_cy: Mapped[str] = mapped_column(String(200))
    cost_centre: Mapped[str] = mapped_column(String(40))
    #: Data hall keys this tenant may place workloads in, e.g. ["police"].
    allowed_halls: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The shared IT service's own tenant (platform admins and finance belong here).
    is_platform: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Requests whose estimated monthly cost (GBP) exceeds this wait for a tenant admin.
    approval_monthly_cost_over: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    #: Requests asking for more vCPUs than this wait for a tenant admin.
    approval_vcpus_over: Mapped[int] = mapped_column(Integer, default=0)
    #: Monthly budget in GBP (None: no budget) and what happens over it: warn | require_approval.
    budget_monthly: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), nullable=True)
    over_budget: Mapped[str] = mapped_column(String(20), default="warn", server_default="warn")
    #: The tenant's OpenID Connect provider as tenants.yaml gives it (issuer, client_id, where the
    #: secret is, email_domains, roles, roles_managed_in); None: its people sign in with passwords.
    sso: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: False: the tenant's people may sign in only through its provider.
    password_sign_in: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    #: False when the tenant has been removed from tenants.yaml (rows are kept for billing).
    #: Default office hours for new VMs ({days, stop, start, timezone}; see cloud_portal.weekly).
    office_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: Longest lease a server may have, in days (None: no limit), and the sizes that must have one.
    lease_max_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_required_for: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: OpenStack project id once the sync playbook has created it.
    openstack_project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def display_name(self, locale: str) -> str:
        return self.name_cy if locale == "cy" else self.name_en

    def __repr__(self) -> str:
        return f"<Tenant {self.slug}>"


class DataHall(db.Model):  # type: ignore[name-defined]
    """A data hall of the shared data centre; also an OpenStack availability zone of the same key."""

    __tablename__ = "data_halls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name_en: Mapped[str] = mapped_column(String(120))
    name_cy: Mapped[str] = mapped_column(String(120))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def display_name(self, locale: str) -> str:
        return self.name_cy if locale == "cy" else self.name_en

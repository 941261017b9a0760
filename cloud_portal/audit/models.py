"""The audit log: who changed what, when, with the values before and after."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud_portal.extensions import db
from cloud_portal.timeutil import UTCDateTime, utcnow


class AuditEvent(db.Model):  # type: ignore[name-defined]
    __tablename__ = "audit_events"
    # The audit log, newest first, for everyone and for one tenant (seek pages read these in order).
    __table_args__ = (Index("ix_audit_events_at_id", "at", "id"),
                      Index("ix_audit_events_tenant_at", "tenant_id", "at", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: None for changes made by the system (CLI without a user, jobs).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    #: Copied so the record reads the same after the user is renamed.
    actor_label: Mapped[str] = mapped_column(String(254))
    #: Tenant the change concerns; admins of that tenant may read the event.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    #: Dotted verb, e.g. "user.disable", "tenant.sync".
    action: Mapped[str] = mapped_column(String(60), index=True)
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

"""Writing and reading the audit log."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import NotPermitted
from cloud_portal.extensions import db
from cloud_portal.i18n import _
from cloud_portal.paging import Listing

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

SYSTEM_ACTOR = "system"


def record(actor: User | None, action: str, target_type: str, target_id: Any, *,
           tenant_id: int | None, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, actor_label: str | None = None) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits with its change)."""
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        actor_label=actor.email if actor is not None else (actor_label or SYSTEM_ACTOR),
        tenant_id=tenant_id, action=action, target_type=target_type,
        target_id=str(target_id), before=before, after=after,
    )
    db.session.add(event)
    return event


def visible_events_listing(viewer: User) -> Listing[AuditEvent]:
    """Events ``viewer`` may read, newest first: all for platform admins, own tenant's for tenant admins."""
    if not viewer.can_view_audit:
        raise NotPermitted(_("Only administrators can read the audit log."))
    query = select(AuditEvent)
    if not viewer.is_platform_admin:
        query = query.where(AuditEvent.tenant_id == viewer.tenant_id)
    return Listing(query, (AuditEvent.at, AuditEvent.id))

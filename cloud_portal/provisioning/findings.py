"""Reconciliation findings: what platform admins should look at (unknown servers, refusals)."""
from __future__ import annotations

from sqlalchemy import select

from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m


def record_finding(kind: str, openstack_id: str, detail: str, tenant_id: int | None) -> bool:
    """Record a finding once per (kind, id); True if it is new. The caller commits."""
    exists = db.session.scalar(select(m.ReconcileFinding.id).where(
        m.ReconcileFinding.kind == kind, m.ReconcileFinding.openstack_id == openstack_id))
    if exists is not None:
        return False
    db.session.add(m.ReconcileFinding(kind=kind, openstack_id=openstack_id, detail=detail, tenant_id=tenant_id))
    return True

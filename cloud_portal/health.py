"""Health of what the portal depends on (database, job queue), for /healthz and /metrics."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from cloud_portal.accounts.models import User
from cloud_portal.adapters.queue import queue_status as _queue_status
from cloud_portal.extensions import db
from cloud_portal.tenants.models import Tenant


def database_status() -> tuple[bool, str | None]:
    """Whether the database answers, and why not. Never raises: that is the point of a health check."""
    try:
        db.session.execute(text("SELECT 1"))
        return True, None
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        db.session.rollback()
        return False, f"{type(exc).__name__}: {exc}"


def queue_status() -> dict[str, Any]:
    """Whether the queue storage answers, how many tasks wait, the worker's last heartbeat."""
    return _queue_status()


def active_users_by_role() -> dict[str, int]:
    return dict(db.session.execute(select(User.role, func.count()).where(User.active.is_(True))
                                   .group_by(User.role)).all())


def active_member_tenants() -> int:
    return db.session.scalar(select(func.count()).select_from(Tenant).where(
        Tenant.active.is_(True), Tenant.is_platform.is_(False))) or 0

"""Servers: who sees them, the actions people ask for, and the one place their state changes.

:func:`transition` is the only way a server's status, size, owner or deletion may change
(a flush listener refuses any other), so what hangs on those changes (audit today, the billing
ledger next) sees every one of them, in the same transaction, with the time it happened.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from cloud_portal.accounts.service import staff_member
from cloud_portal.adapters.cloud import cloud
from cloud_portal.adapters.openstack import CloudError, ServerInfo
from cloud_portal.audit import service as audit
from cloud_portal.catalog.models import Image, VmSize
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted
from cloud_portal.extensions import db
from cloud_portal.i18n import _, action_word, current_language, status_word
from cloud_portal.paging import Listing
from cloud_portal.provisioning import leases
from cloud_portal.provisioning import models as m
from cloud_portal.quotas import service as quotas
from cloud_portal.timeutil import utcnow

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)

#: Columns only :func:`transition` may change.
GUARDED = ("status", "flavor", "vcpus", "ram_mib", "disk_gb", "owner_id", "deleted_at")
_MARKS = "_transition_marks"


@dataclass(frozen=True)
class Change:
    """One server-state change, as listeners of :func:`transition` receive it."""

    server: m.Server
    before: dict[str, Any]
    after: dict[str, Any]
    at: datetime
    cause: str


_listeners: list[Callable[[Change], None]] = []


_created_listeners: list[Callable[[m.Server], None]] = []


def on_created(listener: Callable[[m.Server], None]) -> None:
    """Call ``listener`` with each new server record (office-hours defaults), in its transaction."""
    _created_listeners.append(listener)


def on_transition(listener: Callable[[Change], None]) -> None:
    """Call ``listener`` for every server-state change, inside the change's transaction."""
    _listeners.append(listener)


def transition(server: m.Server, *, cause: str, at: datetime | None = None, status: str | None = None,
               size: VmSize | None = None, owner_id: int | None = None) -> Change:
    """Change a server's status, size or owner; ``at`` is when it happened (default now).

    A status of DELETED also sets ``deleted_at``. Listeners run before the caller commits.
    """
    at = at or utcnow()
    wanted: dict[str, Any] = {}
    if status is not None:
        wanted["status"] = status
        if status == m.SERVER_DELETED:
            wanted["deleted_at"] = at
    if size is not None:
        wanted.update(flavor=size.flavor, vcpus=size.vcpus, ram_mib=size.ram_mib, disk_gb=size.disk_gb)
    if owner_id is not None:
        wanted["owner_id"] = owner_id
    before = {k: getattr(server, k) for k in wanted}
    marks = server.__dict__.setdefault(_MARKS, {})
    for key, value in wanted.items():
        setattr(server, key, value)
        marks[key] = value
    change = Change(server, before, wanted, at, cause)
    for listener in _listeners:
        listener(change)
    return change


@event.listens_for(Session, "before_flush")
def _refuse_changes_outside_transition(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in [*session.new, *session.dirty]:
        if not isinstance(obj, m.Server):
            continue
        marks = obj.__dict__.pop(_MARKS, {})
        state: Any = inspect(obj)
        for key in GUARDED:
            history = state.attrs[key].history
            if obj in session.new:
                value = getattr(obj, key)
                changed = value is not None and key not in ("flavor", "vcpus", "ram_mib", "disk_gb")
            else:
                changed = history.has_changes()
            if changed and marks.get(key, _UNSET) != getattr(obj, key):
                raise RuntimeError(f"Server.{key} changed outside provisioning.servers.transition "
                                   f"(server {obj.id or obj.name}); use transition() so billing sees it")


_UNSET = object()


def create_from_request(request: m.ServerRequest, info: ServerInfo, *, at: datetime | None = None) -> m.Server:
    """The portal's record of the server a request made (first seen ACTIVE), holding its quota."""
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    if server is None:
        server = m.Server(tenant_id=request.tenant_id, request_id=request.id,
                          kind=request.kind, name=request.name, flavor=request.flavor, vcpus=request.vcpus,
                          ram_mib=request.ram_mib, disk_gb=request.disk_gb, image_key=request.image_key,
                          data_hall=request.data_hall, reservation_id=request.reservation_id)
        db.session.add(server)
        transition(server, cause="created", at=at, status=info.status, owner_id=request.owner_id)
        server.expires_at = request.expires_at
        for listener in _created_listeners:
            listener(server)
    elif server.status != info.status:
        transition(server, cause="created", at=at, status=info.status)
    server.openstack_id, server.fixed_ip = info.id, info.fixed_ip
    server.last_seen_at = utcnow()
    return server


def mark_deleted(server: m.Server, why: str, *, at: datetime | None = None) -> None:
    """The server is gone: record it, release its quota, and commit."""
    transition(server, cause=why, at=at, status=m.SERVER_DELETED)
    server.task = None
    if server.reservation_id is not None:
        quotas.release(server.reservation_id, why)
    audit.record(None, "server.deleted", "server", server.openstack_id or server.id, tenant_id=server.tenant_id,
                 after={"why": why})
    db.session.commit()


# Queries ------------------------------------------------------------------------------------

SORTABLE = {"name": m.Server.name, "created": m.Server.created_at, "status": m.Server.status,
            "size": m.Server.vcpus}


def servers_listing(viewer: User, *, scope: str = "mine", sort: str = "created",
                    descending: bool = True, kind: str | None = None) -> Listing[m.Server]:
    """Servers (not deleted) visible to ``viewer``, sorted by one of SORTABLE (then by id); only
    VMs or only desktops when ``kind`` names one."""
    column = SORTABLE.get(sort, m.Server.created_at)
    query = select(m.Server).where(m.Server.status != m.SERVER_DELETED)
    if kind is not None:
        query = query.where(m.Server.kind == kind)
    if scope == "mine":
        query = query.where(m.Server.owner_id == viewer.id)
    elif viewer.is_platform_admin and scope == "all":
        pass
    elif viewer.is_tenant_admin or viewer.is_platform_admin:
        query = query.where(m.Server.tenant_id == viewer.tenant_id)
    else:
        raise NotPermitted(_("Only administrators can see other people's servers."))
    return Listing(query, (column, m.Server.id), descending)


def desktops_of(user: User, limit: int = 10) -> list[m.Server]:
    """The desktops ``user`` owns (made for them or by them), newest first, at most ``limit``."""
    return list(db.session.scalars(
        select(m.Server).where(m.Server.owner_id == user.id, m.Server.kind == m.KIND_DESKTOP,
                               m.Server.status != m.SERVER_DELETED)
        .order_by(m.Server.created_at.desc(), m.Server.id.desc()).limit(limit)))


def load_server(user: User, server_id: int) -> m.Server:
    """The server if ``user`` may see it, else NotFound."""
    server = db.session.get(m.Server, server_id)
    if server is None or not server.can_view(user):
        raise NotFound(_("There is no such server."))
    return server


# Actions ------------------------------------------------------------------------------------

def _resize_target(server: m.Server, new_size: str | None) -> VmSize:
    if server.kind != m.KIND_VM:
        raise InvalidInput(_("Desktops cannot be resized; order another desktop template instead."))
    size = db.session.scalar(select(VmSize).where(VmSize.key == (new_size or ""), VmSize.active.is_(True)))
    if size is None:
        raise InvalidInput(_("Choose one of the sizes offered."))
    if size.flavor == server.flavor:
        raise InvalidInput(_("The server already has that size."))
    image = db.session.scalar(select(Image).where(Image.key == server.image_key))
    if image is not None and image.min_disk_gb > size.disk_gb:
        raise InvalidInput(_("%(image)s needs at least %(needed)s GB of disk; choose a larger size.",
                             image=image.display_name(current_language()), needed=image.min_disk_gb))
    return size


def request_action(user: User, server_id: int, action: str, *, new_size: str | None = None) -> tuple[m.Server, m.Job]:
    """Check an action on a server, record its job and enqueue it when the caller commits.

    A resize to a larger size holds the extra quota first (refused with QuotaExceeded if it
    does not fit).
    """
    server = load_server(user, server_id)
    if not server.can_operate(user):
        raise NotPermitted(_("You may not operate this server."))
    if action not in m.ACTIONS:
        raise InvalidInput(_("%(action)s is not an action; choose one of %(actions)s.", action=repr(action),
                             actions=", ".join(m.ACTIONS)))
    if action not in server.allowed_actions():
        state = _("busy (%(task)s)", task=action_word(server.task)) if server.task else status_word(server.status)
        raise InvalidInput(_("A server that is %(state)s cannot be asked to %(action)s.", state=state,
                             action=action_word(action)))
    job_id, job_action = str(uuid.uuid4()), action
    details: dict[str, Any] = {"action": action}
    if action == "resize":
        size = _resize_target(server, new_size)
        details.update(size=size.key)
        job_action = f"resize:{size.key}"
        extra = {"vcpus": max(0, size.vcpus - server.vcpus), "ram_mib": max(0, size.ram_mib - server.ram_mib),
                 "disk_gb": max(0, size.disk_gb - server.disk_gb)}
        if any(extra.values()):
            db.session.commit()  # the quota lock needs a clean session
            quotas.reserve(server.tenant, server.owner, purpose=f"resize:{job_id}", actor=user, **extra)
    job = queue_action(server, job_action, actor=user, job_id=job_id, details=details)
    return server, job


def queue_action(server: m.Server, action: str, *, actor: User | None, origin: str | None = None,
                 job_id: str | None = None, details: dict[str, Any] | None = None) -> m.Job:
    """Record an action job for ``server`` (marked busy) and enqueue it when the caller commits.
    ``actor`` None with an ``origin`` ("schedule", "expiry") is the portal acting on its own;
    the caller has checked the action is allowed."""
    job = leases.new_job(m.JOB_ACTION, job_id=job_id, action=action, tenant_id=server.tenant_id,
                         server_id=server.id)
    job.origin = origin
    verb = action.partition(":")[0]
    server.task = verb
    audit.record(actor, f"server.{verb}", "server", server.id, tenant_id=server.tenant_id,
                 after={**(details or {"action": verb}), **({"by": origin} if origin else {})})
    leases.enqueue(job)
    return job


def transfer_server(actor: User, server_id: int, to_email: str) -> m.Server:
    """Give a server to another person of its tenant (a leaver's, or work changing hands).

    Tenant admins of the server's tenant and platform admins only. The new owner's per-person
    limits must have room for it (QuotaExceeded names what they lack); the quota hold moves to
    them and the owner changes through :func:`transition`, so the billing ledger charges the old
    owner up to now and the new one from now. Commits.
    """
    server = load_server(actor, server_id)
    if not actor.active or not (actor.is_platform_admin or
                                (actor.is_tenant_admin and actor.tenant_id == server.tenant_id)):
        raise NotPermitted(_("Only the organisation's administrators can give a server to someone else."))
    if server.status == m.SERVER_DELETED:
        raise InvalidInput(_("This server has been deleted."))
    if server.task is not None:
        raise InvalidInput(_("The server is busy (%(task)s); try again when that has finished.",
                             task=action_word(server.task)))
    target = staff_member(server.tenant, to_email, purpose="own servers")
    if target.id == server.owner_id:
        raise InvalidInput(_("%(email)s already owns %(server)s.", email=target.email, server=server.name))
    tenant_id, previous = server.tenant_id, server.owner.email
    db.session.commit()  # the quota lock needs a clean session
    with quotas.serialised_for_tenant(tenant_id):
        locked = db.session.scalars(select(m.Server).where(m.Server.id == server_id)
                                    .execution_options(populate_existing=True)).one()
        if locked.status == m.SERVER_DELETED or locked.task is not None:
            raise InvalidInput(_("The server changed meanwhile; look at it again and retry."))
        if locked.reservation_id is not None:
            quotas.move_hold(locked.reservation_id, target, actor)
        transition(locked, cause="transfer", owner_id=target.id)
        audit.record(actor, "server.transfer", "server", locked.id, tenant_id=tenant_id,
                     before={"owner": previous}, after={"owner": target.email})
        if locked.openstack_id and cloud.context() is not None:  # Nova's metadata names the owner too
            queue_action(locked, "retag", actor=actor, details={"action": "retag", "owner": target.email})
    log.info("server %s given by %s from %s to %s", server_id, actor.email, previous, target.email)
    return locked


def owned_by(owner: User) -> list[m.Server]:
    """Every live server and desktop ``owner`` owns (for the leaver's page: none are listed
    anywhere else once they have left)."""
    return list(db.session.scalars(select(m.Server).where(m.Server.owner_id == owner.id,
                                                          m.Server.status != m.SERVER_DELETED)
                                   .order_by(m.Server.name, m.Server.id)))


def owned_counts(user_ids: list[int]) -> dict[int, int]:
    """Person id → how many live servers and desktops they own (one query for a page of people)."""
    if not user_ids:
        return {}
    return dict(db.session.execute(
        select(m.Server.owner_id, func.count()).where(m.Server.owner_id.in_(user_ids),
                                                      m.Server.status != m.SERVER_DELETED)
        .group_by(m.Server.owner_id)).all())


def console_url(user: User, server_id: int) -> str | None:
    """A fresh console address (Nova's noVNC proxy, with a one-off token) for a running server
    ``user`` may operate: its owner, their tenant admins, platform admins. Asked of Nova each time
    (a token is short-lived and single-use), and audit-logged; the caller commits. None when the
    cloud offers no console. NotFound for anyone who may not see the server."""
    server = load_server(user, server_id)
    if not server.can_operate(user):
        raise NotPermitted(_("Only the server's owner, their tenant administrators and platform administrators "
                             "can open its console."))
    if server.status != m.SERVER_ACTIVE:
        raise InvalidInput(_("The console is available only while the server is running; start it first."))
    ctx = cloud.context()
    if ctx is None or not server.openstack_id:
        return None
    try:
        url = ctx.cloud.console_url(server.openstack_id)
    except CloudError as exc:
        log.info("no console for server %s: %s", server.id, exc)
        return None
    if url:
        # The address carries a token that opens the console: record who asked, never the token.
        audit.record(user, "server.console", "server", server.id, tenant_id=server.tenant_id,
                     after={"protocol": "novnc"})
    return url

"""Quota reservations: hold resources for a request, then consume (server made) or release them."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, NotFound, PortalError, QuotaExceeded
from cloud_portal.extensions import db
from cloud_portal.i18n import _, current_language
from cloud_portal.quotas.models import (
    QUOTA_RESOURCES,
    RESERVATION_CONSUMED,
    RESERVATION_OPEN,
    RESERVATION_RELEASED,
    QuotaReservation,
)
from cloud_portal.quotas.usage import (
    COUNTED_STATES,
    TenantLimits,
    _quota_transaction,
    _tenant_and_user_usage,
    add_usage,
    resource_words,
)
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)


def _shortfalls(tenant_name: str, limits: TenantLimits, tenant_usage: dict[str, int],
                user_usage: dict[str, int], wanted: dict[str, int], holder: str = "You") -> list[str]:
    """Sentences naming each resource the request does not fit, tenant limits first; ``holder``
    names whose per-person limit it is ("You", or the person a tenant admin orders for)."""
    problems: list[str] = []
    for resource, need in wanted.items():
        if need <= 0:
            continue
        words = resource_words(resource)
        limit = limits.tenant.get(resource)
        if limit is None:
            problems.append(_("%(tenant)s has no quota for %(words)s; ask a platform administrator to set one.",
                              tenant=tenant_name, words=words))
            continue
        left = max(0, limit - tenant_usage[resource])
        if need > left:
            problems.append(_("%(tenant)s has %(left)s of %(limit)s %(words)s left; this request needs %(need)s.",
                              tenant=tenant_name, left=left, limit=limit, words=words, need=need))
    return problems + _person_shortfalls(limits, user_usage, wanted, holder)


def _person_shortfalls(limits: TenantLimits, user_usage: dict[str, int], wanted: dict[str, int],
                       holder: str, needing: str = "this request needs") -> list[str]:
    """Sentences naming each resource ``wanted`` does not fit within the person's own limits
    (``holder``: "You" or their address)."""
    problems: list[str] = []
    for resource, need in wanted.items():
        user_limit = limits.per_user.get(resource)
        if need <= 0 or user_limit is None:
            continue
        left = max(0, user_limit - user_usage[resource])
        if need > left:
            words = resource_words(resource)
            if holder == "You":
                problems.append(_("You have %(left)s of %(limit)s %(words)s left; this request needs %(need)s.",
                                  left=left, limit=user_limit, words=words, need=need))
            elif needing == "this needs":
                problems.append(_("%(holder)s has %(left)s of %(limit)s %(words)s left; this needs %(need)s.",
                                  holder=holder, left=left, limit=user_limit, words=words, need=need))
            else:
                problems.append(_("%(holder)s has %(left)s of %(limit)s %(words)s left; this request needs "
                                  "%(need)s.", holder=holder, left=left, limit=user_limit, words=words, need=need))
    return problems


def reserve(tenant: Tenant, user: User, *, instances: int = 0, vcpus: int = 0, ram_mib: int = 0,
            disk_gb: int = 0, desktops: int = 0, purpose: str,
            actor: User | None = None) -> QuotaReservation:
    """Hold resources for ``user`` in ``tenant`` if the tenant's and the person's limits allow.

    **Commits.** Unlike most services, this one owns its transaction: the check and the new
    reservation are one transaction serialised per tenant (see :func:`serialised_for_tenant`),
    and committing is what releases the lock; on refusal it rolls back. Anything else
    pending in the session is committed with it. To write other rows atomically with the
    reservation (a provisioning request, say), call this inside
    ``with serialised_for_tenant(tenant.id):``; the commit then happens when that block ends.

    Amounts are in the units of QUOTA_RESOURCES (RAM in MiB, disk in GB); a desktop counts as one
    instance *and* one desktop, so pass both. ``purpose`` names what the hold is for, e.g.
    ``"request:123"``. ``actor`` (default ``user``) is who is recorded in the audit log.

    Raises QuotaExceeded (nothing written) naming every resource that is short, InvalidInput for
    negative amounts or a person outside the tenant.
    """
    wanted = {"instances": instances, "vcpus": vcpus, "ram_mib": ram_mib, "disk_gb": disk_gb,
              "desktops": desktops}
    for resource, amount in wanted.items():
        if not isinstance(amount, int) or amount < 0:
            raise InvalidInput(_("%(resource)s must be a whole number of 0 or more, not %(amount)s.",
                                 resource=resource, amount=repr(amount)))
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > 120:
        raise InvalidInput(_("A reservation needs a purpose of 1 to 120 characters, e.g. 'request:123'."))
    # Plain values read up front: committing expires ORM objects, and lazy loads inside the
    # locked block would lengthen the time other requests wait for the lock.
    tenant_id, tenant_name, tenant_slug = tenant.id, tenant.display_name(current_language()), tenant.slug
    user_id, user_email = user.id, user.email
    if user.tenant_id != tenant_id:
        raise InvalidInput(_("%(email)s is not a member of %(tenant)s.", email=user_email, tenant=tenant_name))
    acting = actor if actor is not None else user
    acting_email = acting.email

    with _quota_transaction(tenant_id) as txn:
        # Write first, then lock and check: on PostgreSQL the inserts run before the lock, so the
        # lock is held only for the check, the usage update and the commit. Nobody else sees the
        # rows before the commit; a refusal rolls them back.
        reservation = QuotaReservation(tenant_id=tenant_id, user_id=user_id, purpose=purpose,
                                       state=RESERVATION_OPEN, **wanted)
        db.session.add(reservation)
        db.session.flush()
        reservation_id = reservation.id
        audit.record(acting, "quota.reserve", "quota_reservation", reservation_id,
                     tenant_id=tenant_id, after={"purpose": purpose, "user_id": user_id, **wanted})
        db.session.flush()
        limits = txn.lock()
        tenant_usage, user_usage = _tenant_and_user_usage(tenant_id, user_id)
        holder = "You" if acting is user else user_email
        problems = _shortfalls(tenant_name, limits, tenant_usage, user_usage, wanted, holder)
        if problems:
            log.info("quota refused for %s in %s (%s): %s", user_email, tenant_slug, purpose,
                     " ".join(problems))
            raise QuotaExceeded(" ".join(problems))
        # After the lock (see the lock order in cloud_portal.quotas.usage).
        add_usage(tenant_id, user_id, wanted)
    log.info("quota reservation %s (%s) for %s made by %s", reservation_id, purpose, user_email,
             acting_email)
    return reservation


def _locked(reservation_id: int) -> QuotaReservation | None:
    """The reservation, read again and locked until the transaction ends (PostgreSQL; SQLite's
    quota transaction holds the database's write lock already)."""
    return db.session.scalars(select(QuotaReservation).where(QuotaReservation.id == reservation_id)
                              .with_for_update().execution_options(populate_existing=True)).one_or_none()


def _get_reservation(reservation_id: int) -> QuotaReservation:
    reservation = db.session.get(QuotaReservation, reservation_id)
    if reservation is None:
        raise NotFound(_("There is no quota reservation %(id)s.", id=reservation_id))
    return reservation


def release(reservation_id: int, reason: str, actor: User | None = None) -> QuotaReservation:
    """Give a reservation's resources back (request failed, rejected, cancelled; server deleted).

    Idempotent: releasing a released reservation changes nothing and records nothing. The state
    change is one conditional UPDATE, so a concurrent release or consume cannot be lost.
    The caller commits (with the change that caused the release).
    """
    reservation = _get_reservation(reservation_id)
    before = reservation.state
    reason = (reason or "").strip()[:200] or "released"
    # RETURNING: the amounts as they are when the row is ours (a resize may have changed them).
    given_back = db.session.execute(
        update(QuotaReservation)
        .where(QuotaReservation.id == reservation_id, QuotaReservation.state != RESERVATION_RELEASED)
        .values(state=RESERVATION_RELEASED, released_at=utcnow(), release_reason=reason)
        .returning(*[getattr(QuotaReservation, r) for r in QUOTA_RESOURCES])
        .execution_options(synchronize_session="fetch")).one_or_none()
    if given_back is not None:
        # Only open and consumed reservations get here, and both count as usage.
        add_usage(reservation.tenant_id, reservation.user_id,
                  {r: -int(amount) for r, amount in zip(QUOTA_RESOURCES, given_back, strict=True)})
        audit.record(actor, "quota.release", "quota_reservation", reservation_id,
                     tenant_id=reservation.tenant_id, before={"state": before},
                     after={"state": RESERVATION_RELEASED, "reason": reason})
        log.info("quota reservation %s released (%s) by %s", reservation_id, reason,
                 actor.email if actor is not None else audit.SYSTEM_ACTOR)
    return reservation


def consume(reservation_id: int, actor: User | None = None) -> QuotaReservation:
    """Mark an open reservation as turned into a live resource. Idempotent; the caller commits.

    Raises PortalError if the reservation was released meanwhile (its resources may already be
    held by someone else, so the new resource must be cleaned up rather than counted).
    """
    reservation = _get_reservation(reservation_id)
    result = db.session.execute(
        update(QuotaReservation)
        .where(QuotaReservation.id == reservation_id, QuotaReservation.state == RESERVATION_OPEN)
        .values(state=RESERVATION_CONSUMED, consumed_at=utcnow())
        .execution_options(synchronize_session="fetch"))
    if result.rowcount:  # type: ignore[attr-defined]
        audit.record(actor, "quota.consume", "quota_reservation", reservation_id,
                     tenant_id=reservation.tenant_id, before={"state": RESERVATION_OPEN},
                     after={"state": RESERVATION_CONSUMED})
        return reservation
    db.session.refresh(reservation)
    if reservation.state == RESERVATION_RELEASED:
        raise PortalError(f"Quota reservation {reservation_id} ({reservation.purpose}) was released "
                          f"({reservation.release_reason}); it can no longer be used.")
    return reservation



def resize_held(reservation_id: int, *, vcpus: int, ram_mib: int, disk_gb: int) -> None:
    """A resized server's consumed reservation now holds its new size. The caller holds the
    tenant's lock (``serialised_for_tenant``) and commits."""
    held = _locked(reservation_id)
    if held is None:
        return
    if held.state in COUNTED_STATES:
        add_usage(held.tenant_id, held.user_id, {"vcpus": vcpus - held.vcpus, "ram_mib": ram_mib - held.ram_mib,
                                                 "disk_gb": disk_gb - held.disk_gb})
    held.vcpus, held.ram_mib, held.disk_gb = vcpus, ram_mib, disk_gb


def move_hold(reservation_id: int, to_user: User, actor: User | None = None) -> None:
    """Hand a reservation (a live server's hold) to another person of its tenant, if their
    per-person limits have room for it; the tenant's own usage does not change.

    Joins the caller's ``serialised_for_tenant`` block (or makes its own transaction, which
    commits). Raises QuotaExceeded naming each resource the person has too little of,
    InvalidInput for a person of another tenant.
    """
    tenant_id = db.session.scalar(select(QuotaReservation.tenant_id).where(QuotaReservation.id == reservation_id))
    if tenant_id is None:
        return
    if to_user.tenant_id != tenant_id:
        raise InvalidInput(_("%(email)s is not a member of the organisation that holds this quota.",
                             email=to_user.email))
    with _quota_transaction(tenant_id) as txn:
        limits = txn.lock()  # the tenant's lock first, then the reservation (see quotas.usage)
        held = _locked(reservation_id)
        assert held is not None  # its tenant was read above, and reservations are never deleted
        if held.user_id == to_user.id:
            return
        amounts = held.amounts()
        if held.state in COUNTED_STATES:
            _tenant_usage, their_usage = _tenant_and_user_usage(tenant_id, to_user.id)
            problems = _person_shortfalls(limits, their_usage, amounts, to_user.email, needing="this needs")
            if problems:
                raise QuotaExceeded(" ".join(problems))
            add_usage(tenant_id, held.user_id, {r: -amount for r, amount in amounts.items()})
            add_usage(tenant_id, to_user.id, amounts)
        before = held.user_id
        held.user_id = to_user.id
        audit.record(actor, "quota.move", "quota_reservation", reservation_id, tenant_id=tenant_id,
                     before={"user_id": before}, after={"user_id": to_user.id})


def release_by_purpose(purpose: str, reason: str, actor: User | None = None) -> None:
    """Release the reservation made for ``purpose`` (e.g. ``"resize:<job>"``), if there is one."""
    hold = db.session.scalar(select(QuotaReservation.id).where(QuotaReservation.purpose == purpose))
    if hold is not None:
        release(hold, reason, actor)


"""Quota limits, usage, headroom, and race-free reservations.

Usage = live resources + reservations that still hold resources.  Live servers are not tracked
yet, so a *consumed* reservation (one that became a live resource) stands in for its server and
counts as usage alongside *open* ones; *released* reservations do not count.  When servers are
tracked, usage becomes live servers + open reservations and :data:`COUNTED_STATES` shrinks to
``(RESERVATION_OPEN,)``.

Serialisation: :func:`reserve` checks the limits and writes the reservation in one transaction
that holds a per-tenant lock (see :func:`serialised_for_tenant`), so two concurrent requests can
never both pass a check that only one of them fits.
"""
from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, case, func, select, update

from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted, PortalError, QuotaExceeded
from cloud_portal.extensions import db
from cloud_portal.quotas.models import (
    INCREASE_APPROVED,
    INCREASE_DECLINED,
    INCREASE_OPEN,
    QUOTA_RESOURCES,
    RESERVATION_CONSUMED,
    RESERVATION_OPEN,
    RESERVATION_RELEASED,
    SCOPE_PER_USER,
    SCOPE_TENANT,
    QuotaIncreaseRequest,
    QuotaLimit,
    QuotaReservation,
)
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)

#: Reservation states that count as usage (consumed ones stand in for live servers, see above).
COUNTED_STATES = (RESERVATION_OPEN, RESERVATION_CONSUMED)

#: How each resource reads in a sentence: "2 of 160 vCPUs left".
RESOURCE_WORDS: dict[str, str] = {
    "instances": "instances",
    "vcpus": "vCPUs",
    "ram_mib": "MiB of RAM",
    "disk_gb": "GB of disk",
    "desktops": "desktops",
}

#: Key in ``Session.info`` holding the session's current quota transaction, if any.
_LOCK_KEY = "cloud_portal.quotas.transaction"


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


# Usage and headroom ---------------------------------------------------------------------------

def _sums(*conditions: object) -> dict[str, int]:
    columns = [func.coalesce(func.sum(getattr(QuotaReservation, r)), 0) for r in QUOTA_RESOURCES]
    row = db.session.execute(select(*columns).where(
        QuotaReservation.state.in_(COUNTED_STATES), *conditions)).one()  # type: ignore[arg-type]
    return {resource: int(value) for resource, value in zip(QUOTA_RESOURCES, row, strict=True)}


def usage_for_tenant(tenant_id: int) -> dict[str, int]:
    """Resource → amount the tenant uses (in the units of QUOTA_RESOURCES)."""
    return _sums(QuotaReservation.tenant_id == tenant_id)


def usage_for_tenants(tenant_ids: list[int]) -> dict[int, dict[str, int]]:
    """Usage of several tenants in one query (for the platform admins' overview)."""
    if not tenant_ids:
        return {}
    columns = [func.coalesce(func.sum(getattr(QuotaReservation, r)), 0) for r in QUOTA_RESOURCES]
    result = {tid: dict.fromkeys(QUOTA_RESOURCES, 0) for tid in tenant_ids}
    rows = db.session.execute(select(QuotaReservation.tenant_id, *columns).where(
        QuotaReservation.tenant_id.in_(tenant_ids), QuotaReservation.state.in_(COUNTED_STATES))
        .group_by(QuotaReservation.tenant_id))
    for tenant_id, *sums in rows:
        result[tenant_id] = {r: int(v) for r, v in zip(QUOTA_RESOURCES, sums, strict=True)}
    return result


def usage_for_user(user_id: int) -> dict[str, int]:
    """Resource → amount held for this person (counts against per-user limits)."""
    return _sums(QuotaReservation.user_id == user_id)


@functools.cache
def _usage_statement() -> Select[Any]:
    """Tenant usage and one person's usage in one query; built once (this runs under the lock,
    and constructing the statement costs more Python time than executing it)."""
    user_id: Any = bindparam("user_id")
    tenant_cols = [func.coalesce(func.sum(getattr(QuotaReservation, r)), 0) for r in QUOTA_RESOURCES]
    user_cols = [func.coalesce(func.sum(case((QuotaReservation.user_id == user_id,
                                              getattr(QuotaReservation, r)), else_=0)), 0)
                 for r in QUOTA_RESOURCES]
    return select(*tenant_cols, *user_cols).where(
        QuotaReservation.tenant_id == bindparam("tenant_id"),
        QuotaReservation.state.in_(COUNTED_STATES))


def _tenant_and_user_usage(tenant_id: int, user_id: int) -> tuple[dict[str, int], dict[str, int]]:
    row = db.session.execute(_usage_statement(), {"tenant_id": tenant_id, "user_id": user_id}).one()
    n = len(QUOTA_RESOURCES)
    tenant_usage = {r: int(v) for r, v in zip(QUOTA_RESOURCES, row[:n], strict=True)}
    user_usage = {r: int(v) for r, v in zip(QUOTA_RESOURCES, row[n:], strict=True)}
    return tenant_usage, user_usage


@dataclass(frozen=True)
class ResourceHeadroom:
    """How much of one resource a person may still ask for, and why."""

    resource: str
    #: Tenant limit; 0 when the tenant has no quota for this resource.
    tenant_limit: int
    tenant_used: int
    #: Per-person limit, or None when the tenant sets none.
    user_limit: int | None
    user_used: int

    @property
    def tenant_left(self) -> int:
        return max(0, self.tenant_limit - self.tenant_used)

    @property
    def user_left(self) -> int | None:
        return None if self.user_limit is None else max(0, self.user_limit - self.user_used)

    @property
    def available(self) -> int:
        """What a new request by this person may take: the smaller of the two headrooms."""
        user_left = self.user_left
        return self.tenant_left if user_left is None else min(self.tenant_left, user_left)


def headroom(tenant_id: int, user_id: int) -> dict[str, ResourceHeadroom]:
    """Resource → headroom for ``user_id`` in ``tenant_id``. A snapshot for display: only
    :func:`reserve` decides, under the tenant's lock."""
    limits = limits_for_tenant(tenant_id)
    tenant_usage, user_usage = _tenant_and_user_usage(tenant_id, user_id)
    return {r: ResourceHeadroom(r, limits.tenant.get(r, 0), tenant_usage[r], limits.per_user.get(r),
                                user_usage[r]) for r in QUOTA_RESOURCES}


# Serialisation ----------------------------------------------------------------------------------

@functools.cache
def _lock_statement() -> Any:  # a Select of (tenant id, scope, resource, limit)
    """The tenant's row, locked, with its limits (one round trip).

    ``FOR NO KEY UPDATE OF tenants`` (SQLite ignores it): it conflicts with itself, so quota
    checks for one tenant take turns, but not with the ``FOR KEY SHARE`` locks PostgreSQL takes
    for foreign-key checks, so inserting rows that refer to the tenant (reservations, audit
    events, users) neither waits for the quota lock nor deadlocks with it. A plain ``FOR
    UPDATE`` would deadlock in :func:`reserve`, which inserts before locking.
    """
    return (select(Tenant.id, QuotaLimit.scope, QuotaLimit.resource, QuotaLimit.limit)
            .select_from(Tenant)
            .outerjoin(QuotaLimit, QuotaLimit.tenant_id == Tenant.id)
            .where(Tenant.id == bindparam("tenant_id"))
            .with_for_update(of=Tenant, key_share=True))


class _QuotaTransaction:
    """One transaction for one tenant's quota; :meth:`lock` takes the tenant's lock (once)."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.limits: TenantLimits | None = None

    def lock(self) -> TenantLimits:
        """Wait for the tenant's quota lock; return its limits as read under the lock."""
        if self.limits is None:
            rows = db.session.execute(_lock_statement(), {"tenant_id": self.tenant_id}).all()
            if not rows:
                raise NotFound(f"There is no tenant with id {self.tenant_id}.")
            limits = TenantLimits()
            for _, scope, resource, limit in rows:
                if scope == SCOPE_TENANT:
                    limits.tenant[resource] = limit
                elif scope == SCOPE_PER_USER:
                    limits.per_user[resource] = limit
            self.limits = limits
        return self.limits


@contextmanager
def _quota_transaction(tenant_id: int) -> Iterator[_QuotaTransaction]:
    """A transaction that commits at the end of the block (rolls back on any exception).

    On SQLite it starts with ``BEGIN IMMEDIATE``, taking the database's write lock before the
    first read, so it is serialised from its start; on PostgreSQL the serialising point is
    :meth:`_QuotaTransaction.lock`. Nested blocks for the same tenant join the outer one.
    """
    session = db.session
    outer = session.info.get(_LOCK_KEY)
    if outer is not None:
        if outer.tenant_id != tenant_id:
            raise RuntimeError(f"already in the quota transaction of tenant {outer.tenant_id}; "
                               f"finish it before starting one for tenant {tenant_id}")
        yield outer
        return
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        driver = connection.connection.driver_connection
        if driver is not None and driver.in_transaction:
            raise RuntimeError("the session has uncommitted writes; commit or roll back before "
                               "starting a quota transaction")
        # pysqlite would begin a deferred transaction only at the first write, after the check.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    txn = _QuotaTransaction(tenant_id)
    session.info[_LOCK_KEY] = txn
    try:
        yield txn
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop(_LOCK_KEY, None)


@contextmanager
def serialised_for_tenant(tenant_id: int) -> Iterator[TenantLimits]:
    """Run the block in one transaction holding ``tenant_id``'s quota lock; commit at the end.

    Yields the tenant's limits, read under the lock. Quota decisions for one tenant take turns:
    on PostgreSQL by a lock on the tenant's row (see :func:`_lock_statement`; with the default
    READ COMMITTED isolation each later statement sees every commit made before the lock was
    granted), on SQLite by starting the transaction with ``BEGIN IMMEDIATE``.

    The block commits on success and rolls back on any exception, releasing the lock either way.
    Nested use for the same tenant joins the outer block (so a caller can create its request row
    and call :func:`reserve` in one transaction); nesting for another tenant is an error.
    On SQLite the session must not hold uncommitted writes already: commit or roll back first.
    """
    with _quota_transaction(tenant_id) as txn:
        yield txn.lock()


# Reservations -----------------------------------------------------------------------------------

def _shortfalls(tenant_name: str, limits: TenantLimits, tenant_usage: dict[str, int],
                user_usage: dict[str, int], wanted: dict[str, int]) -> list[str]:
    """Sentences naming each resource the request does not fit, tenant limits first."""
    problems: list[str] = []
    for resource, need in wanted.items():
        if need <= 0:
            continue
        words = RESOURCE_WORDS[resource]
        limit = limits.tenant.get(resource)
        if limit is None:
            problems.append(f"{tenant_name} has no quota for {words}; "
                            f"ask a platform administrator to set one.")
            continue
        left = max(0, limit - tenant_usage[resource])
        if need > left:
            problems.append(f"{tenant_name} has {left} of {limit} {words} left; "
                            f"this request needs {need}.")
    for resource, need in wanted.items():
        user_limit = limits.per_user.get(resource)
        if need <= 0 or user_limit is None:
            continue
        left = max(0, user_limit - user_usage[resource])
        if need > left:
            problems.append(f"You have {left} of {user_limit} {RESOURCE_WORDS[resource]} left; "
                            f"this request needs {need}.")
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
            raise InvalidInput(f"{resource} must be a whole number of 0 or more, not {amount!r}.")
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > 120:
        raise InvalidInput("A reservation needs a purpose of 1 to 120 characters, e.g. 'request:123'.")
    # Plain values read up front: committing expires ORM objects, and lazy loads inside the
    # locked block would lengthen the time other requests wait for the lock.
    tenant_id, tenant_name, tenant_slug = tenant.id, tenant.name_en, tenant.slug
    user_id, user_email = user.id, user.email
    if user.tenant_id != tenant_id:
        raise InvalidInput(f"{user_email} is not a member of {tenant_name}.")
    acting = actor if actor is not None else user
    acting_email = acting.email

    with _quota_transaction(tenant_id) as txn:
        # Write first, lock, then check with our own reservation counted: on PostgreSQL the
        # inserts run before the lock, so the lock is held only for one query and the commit.
        # Nobody else sees the rows before the commit; a refusal rolls them back.
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
        others_tenant = {r: tenant_usage[r] - wanted[r] for r in QUOTA_RESOURCES}
        others_user = {r: user_usage[r] - wanted[r] for r in QUOTA_RESOURCES}
        problems = _shortfalls(tenant_name, limits, others_tenant, others_user, wanted)
        if problems:
            log.info("quota refused for %s in %s (%s): %s", user_email, tenant_slug, purpose,
                     " ".join(problems))
            raise QuotaExceeded(" ".join(problems))
    log.info("quota reservation %s (%s) for %s made by %s", reservation_id, purpose, user_email,
             acting_email)
    return reservation


def _get_reservation(reservation_id: int) -> QuotaReservation:
    reservation = db.session.get(QuotaReservation, reservation_id)
    if reservation is None:
        raise NotFound(f"There is no quota reservation {reservation_id}.")
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
    result = db.session.execute(
        update(QuotaReservation)
        .where(QuotaReservation.id == reservation_id, QuotaReservation.state != RESERVATION_RELEASED)
        .values(state=RESERVATION_RELEASED, released_at=utcnow(), release_reason=reason)
        .execution_options(synchronize_session="fetch"))
    if result.rowcount:  # type: ignore[attr-defined]
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


# Editing limits -------------------------------------------------------------------------------

class LimitsBelowUsage(InvalidInput):
    """New limits are below current usage; repeat with ``confirm_below_usage=True`` to apply.

    ``problems`` holds one sentence per resource that would be over its new limit.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems) + " Confirm to apply the lower limits anyway.")
        self.problems = problems


def _clean_limits(tenant_limits: dict[str, Any],
                  per_user_limits: dict[str, Any]) -> tuple[dict[str, int], dict[str, int | None]]:
    """Validated copies: every tenant limit a whole number ≥ 0, per-person ones None or ≤ the tenant's."""
    tenant_clean: dict[str, int] = {}
    per_user_clean: dict[str, int | None] = {}
    for resource in QUOTA_RESOURCES:
        value = tenant_limits.get(resource)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"The tenant limit for {RESOURCE_WORDS[resource]} must be a whole number "
                               f"of 0 or more, not {value!r}.")
        tenant_clean[resource] = value
        per_user = per_user_limits.get(resource)
        if per_user is not None:
            if isinstance(per_user, bool) or not isinstance(per_user, int) or per_user < 0:
                raise InvalidInput(f"The limit for each person for {RESOURCE_WORDS[resource]} must be a "
                                   f"whole number of 0 or more, or blank for no limit, not {per_user!r}.")
            if per_user > value:
                raise InvalidInput(f"The limit for each person ({per_user} {RESOURCE_WORDS[resource]}) cannot "
                                   f"be more than the tenant's limit ({value}).")
        per_user_clean[resource] = per_user
    return tenant_clean, per_user_clean


def _over_usage(tenant: Tenant, tenant_new: dict[str, int], per_user_new: dict[str, int | None],
                before: TenantLimits) -> list[str]:
    """Sentences naming each lowered limit that current usage is above."""
    usage = usage_for_tenant(tenant.id)
    problems = [f"{tenant.name_en} uses {usage[r]} {RESOURCE_WORDS[r]}; the new limit {limit} is below that."
                for r, limit in tenant_new.items()
                if limit < before.tenant.get(r, limit + 1) and usage[r] > limit]
    lowered = [r for r, limit in per_user_new.items() if limit is not None
               and ((old := before.per_user.get(r)) is None or limit < old)]
    if lowered:
        columns = [func.coalesce(func.sum(getattr(QuotaReservation, r)), 0) for r in lowered]
        rows = db.session.execute(select(*columns).where(
            QuotaReservation.tenant_id == tenant.id, QuotaReservation.state.in_(COUNTED_STATES))
            .group_by(QuotaReservation.user_id)).all()
        for i, resource in enumerate(lowered):
            limit = per_user_new[resource]
            assert limit is not None
            over = [row[i] for row in rows if row[i] > limit]
            if over:
                problems.append(f"The new limit for each person of {limit} {RESOURCE_WORDS[resource]} is below "
                                f"what {len(over)} of {tenant.name_en}'s people use (the most is {max(over)}).")
    return problems


def set_limits(actor: User, tenant: Tenant, tenant_limits: dict[str, Any], per_user_limits: dict[str, Any],
               confirm_below_usage: bool = False) -> TenantLimits:
    """Replace ``tenant``'s limits (all five tenant limits; per-person ones None = no limit).

    **Commits** (under the tenant's quota lock, so no reservation slips in between the usage
    check and the change; as with :func:`serialised_for_tenant`, the session must hold no
    uncommitted writes on SQLite). Platform admins only. Raises InvalidInput for values that are not
    whole numbers ≥ 0 or a per-person limit above the tenant's, and :class:`LimitsBelowUsage`
    (nothing written) when a lowered limit is below current usage and ``confirm_below_usage``
    is false. The change is audit-logged with before and after. Returns the new limits.

    The caller syncs OpenStack's copy (``provisioning.service.sync_tenants_to_cloud``).
    A later ``tenants sync`` puts tenants.yaml's limits back.
    """
    if not actor.can_edit_quotas:
        raise NotPermitted("Only platform administrators can change quota limits.")
    if tenant.is_platform:
        raise InvalidInput("The platform's own tenant has no quota limits.")
    tenant_new, per_user_new = _clean_limits(tenant_limits, per_user_limits)
    with serialised_for_tenant(tenant.id) as before:
        if not confirm_below_usage:
            problems = _over_usage(tenant, tenant_new, per_user_new, before)
            if problems:
                raise LimitsBelowUsage(problems)
        rows = {(row.scope, row.resource): row for row in db.session.scalars(
            select(QuotaLimit).where(QuotaLimit.tenant_id == tenant.id))}
        wanted: dict[tuple[str, str], int | None] = {(SCOPE_TENANT, r): v for r, v in tenant_new.items()}
        wanted.update({(SCOPE_PER_USER, r): v for r, v in per_user_new.items()})
        for key, value in wanted.items():
            row = rows.get(key)
            if value is None:
                if row is not None:
                    db.session.delete(row)
            elif row is None:
                db.session.add(QuotaLimit(tenant_id=tenant.id, scope=key[0], resource=key[1], limit=value))
            else:
                row.limit = value
        audit.record(actor, "quota.set_limits", "tenant", tenant.slug, tenant_id=tenant.id,
                     before={"tenant": dict(before.tenant), "per_user": dict(before.per_user)},
                     after={"tenant": tenant_new, "per_user": per_user_new})
    log.info("quota limits of %s changed by %s: %s, each person %s", tenant.slug, actor.email,
             tenant_new, per_user_new)
    return TenantLimits(tenant=tenant_new, per_user=per_user_new)


# Increase requests ----------------------------------------------------------------------------

def create_increase(user: User, wanted: dict[str, Any], reason: str) -> QuotaIncreaseRequest:
    """A member or tenant admin asks for more of their tenant's quota; the caller commits.

    ``wanted`` maps resources to the *extra* amount wanted (None or 0 = nothing more).
    """
    if not user.can_ask_quota_increase:
        raise NotPermitted("Only people in a member organisation can ask for more quota.")
    amounts: dict[str, int | None] = {}
    for resource in QUOTA_RESOURCES:
        value = wanted.get(resource)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(f"{RESOURCE_WORDS[resource]}: enter a whole number of 0 or more, or leave it blank.")
        amounts[resource] = value or None
    if not any(amounts.values()):
        raise InvalidInput("Say how much more of at least one resource you need.")
    reason = (reason or "").strip()
    if not 3 <= len(reason) <= 1000:
        raise InvalidInput("Say why you need more (3 to 1000 characters).")
    increase = QuotaIncreaseRequest(tenant_id=user.tenant_id, requester_id=user.id, reason=reason,
                                    state=INCREASE_OPEN, **amounts)
    db.session.add(increase)
    db.session.flush()
    audit.record(user, "quota.increase_request", "quota_increase_request", increase.id,
                 tenant_id=user.tenant_id, after={"wanted": increase.wanted(), "reason": reason})
    log.info("quota increase %s asked by %s: %s", increase.id, user.email, increase.wanted())
    return increase


def increases_query(viewer: User, *, scope: str = "mine") -> Select[tuple[QuotaIncreaseRequest]]:
    """Increase requests, newest first: own ("mine"), or every one ("open"/"all", platform admins)."""
    query = select(QuotaIncreaseRequest).order_by(QuotaIncreaseRequest.created_at.desc(),
                                                  QuotaIncreaseRequest.id.desc())
    if scope == "mine":
        return query.where(QuotaIncreaseRequest.requester_id == viewer.id)
    if not viewer.can_edit_quotas:
        raise NotPermitted("Only platform administrators can see every quota-increase request.")
    if scope == "open":
        return query.where(QuotaIncreaseRequest.state == INCREASE_OPEN)
    return query


def count_open_increases(viewer: User) -> int:
    """How many increase requests wait for a decision (platform admins)."""
    query = increases_query(viewer, scope="open")
    return db.session.scalar(query.with_only_columns(func.count()).order_by(None)) or 0


def load_increase(viewer: User, increase_id: int) -> QuotaIncreaseRequest:
    """The increase request if ``viewer`` may see it (the requester, platform admins), else NotFound."""
    increase = db.session.get(QuotaIncreaseRequest, increase_id)
    if increase is None or not (increase.requester_id == viewer.id or viewer.can_edit_quotas):
        raise NotFound("There is no such quota-increase request.")
    return increase


def _open_increase_for_decision(admin: User, increase_id: int) -> QuotaIncreaseRequest:
    if not admin.can_edit_quotas:
        raise NotPermitted("Only platform administrators can decide quota-increase requests.")
    increase = load_increase(admin, increase_id)
    if increase.state != INCREASE_OPEN:
        raise InvalidInput(f"This quota-increase request is already {increase.state}.")
    return increase


def approve_increase(admin: User, increase_id: int, reason: str = "") -> QuotaIncreaseRequest:
    """Approve: each tenant limit asked about goes up by the extra amount wanted. **Commits.**

    The limits are read and raised under the tenant's quota lock (via :func:`set_limits`),
    together with the request's new state. The caller syncs OpenStack and notifies the requester.
    """
    increase = _open_increase_for_decision(admin, increase_id)
    tenant = increase.tenant
    increase_id = increase.id
    db.session.commit()  # the quota lock needs a clean session
    with serialised_for_tenant(tenant.id) as limits:
        fresh = db.session.get(QuotaIncreaseRequest, increase_id)  # re-read under the lock
        if fresh is None or fresh.state != INCREASE_OPEN:
            raise InvalidInput("This quota-increase request was decided meanwhile.")
        increase = fresh
        new_tenant = dict(limits.tenant)
        for resource, extra in increase.wanted().items():
            new_tenant[resource] = new_tenant.get(resource, 0) + extra
        new_tenant = {r: new_tenant.get(r, 0) for r in QUOTA_RESOURCES}
        set_limits(admin, tenant, new_tenant, dict(limits.per_user), confirm_below_usage=True)
        increase.state, increase.decided_by_id, increase.decided_at = INCREASE_APPROVED, admin.id, utcnow()
        increase.decision_reason = (reason or "").strip()[:500] or None
        audit.record(admin, "quota.increase_approve", "quota_increase_request", increase.id,
                     tenant_id=tenant.id, before={"state": INCREASE_OPEN},
                     after={"state": INCREASE_APPROVED, "limits": new_tenant})
    log.info("quota increase %s approved by %s", increase_id, admin.email)
    return increase


def decline_increase(admin: User, increase_id: int, reason: str) -> QuotaIncreaseRequest:
    """Decline with a reason the requester sees (portal and e-mail); the caller commits."""
    increase = _open_increase_for_decision(admin, increase_id)
    reason = (reason or "").strip()
    if not 3 <= len(reason) <= 500:
        raise InvalidInput("Give the requester a reason (3 to 500 characters).")
    increase.state, increase.decided_by_id, increase.decided_at = INCREASE_DECLINED, admin.id, utcnow()
    increase.decision_reason = reason
    audit.record(admin, "quota.increase_decline", "quota_increase_request", increase.id,
                 tenant_id=increase.tenant_id, before={"state": INCREASE_OPEN},
                 after={"state": INCREASE_DECLINED, "reason": reason})
    log.info("quota increase %s declined by %s", increase.id, admin.email)
    return increase


def notify_increase_decision(settings: dict[str, Any], increase: QuotaIncreaseRequest) -> bool:
    """E-mail the requester the decision and its reason. Never raises: a lost e-mail is logged,
    and the decision (already committed) stands; the requester also sees it in the portal."""
    from cloud_portal.adapters.mail import MailError, send_mail
    wanted = ", ".join(f"{amount} {RESOURCE_WORDS[r]}" for r, amount in increase.wanted().items())
    verdict = "approved" if increase.state == INCREASE_APPROVED else "declined"
    lines = [f"Your request for more quota for {increase.tenant.name_en} ({wanted}) was {verdict}."]
    if increase.decision_reason:
        lines.append(f"Reason: {increase.decision_reason}")
    if increase.state == INCREASE_APPROVED:
        lines.append("The new limits apply now.")
    try:
        return send_mail(settings, increase.requester.email, f"Quota increase {verdict}", "\n\n".join(lines) + "\n")
    except MailError as exc:
        log.warning("quota increase %s: e-mail to the requester failed: %s", increase.id, exc)
        return False

"""Quota limits, usage, headroom, and the per-tenant lock that makes reservations race-free.

Usage = live resources + reservations that still hold resources.  Live servers are not tracked
yet, so a *consumed* reservation (one that became a live resource) stands in for its server and
counts as usage alongside *open* ones; *released* reservations do not count.  When servers are
tracked, usage becomes live servers + open reservations and :data:`COUNTED_STATES` shrinks to
``(RESERVATION_OPEN,)``.

Usage is not summed from the reservations on each read: every reservation change adds to or
takes from the holder's row in ``quota_usage`` (:func:`add_usage`), and reads sum those rows.

Serialisation: :func:`reserve` checks the limits and writes the reservation in one transaction
that holds a per-tenant lock (see :func:`serialised_for_tenant`), so two concurrent requests can
never both pass a check that only one of them fits. Usage only grows under that lock (reserve,
resize); it shrinks (release) without it, which can only make a concurrent check cautious. Lock
order, to rule out deadlocks on PostgreSQL: the tenant's lock before any ``quota_usage`` row, and
no transaction asks for the tenant's lock after changing a usage row.
"""
from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select

from cloud_portal.errors import NotFound
from cloud_portal.extensions import db
from cloud_portal.i18n import N_, _
from cloud_portal.quotas.models import (
    QUOTA_RESOURCES,
    RESERVATION_CONSUMED,
    RESERVATION_OPEN,
    SCOPE_PER_USER,
    SCOPE_TENANT,
    QuotaLimit,
    QuotaReservation,
    QuotaUsage,
)
from cloud_portal.tenants.models import Tenant

log = logging.getLogger(__name__)

#: Reservation states that count as usage (consumed ones stand in for live servers, see above).
COUNTED_STATES = (RESERVATION_OPEN, RESERVATION_CONSUMED)

#: How each resource reads in a sentence: "2 of 160 vCPUs left".
#: English as stored and logged; sentences shown to people use :func:`resource_words`.
RESOURCE_WORDS: dict[str, str] = {
    "instances": N_("instances"),
    "vcpus": N_("vCPUs"),
    "ram_mib": N_("MiB of RAM"),
    "disk_gb": N_("GB of disk"),
    "desktops": N_("desktops"),
}


def resource_words(resource: str) -> str:
    """How a sentence names an amount of ``resource`` ("vCPUs"), in the reader's language."""
    return _(RESOURCE_WORDS[resource])

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
# Read from the per-person totals (QuotaUsage), which the reservation changes keep current; a
# tenant's usage is the sum of its people's rows, so its cost follows the people, not the servers.

def _usage_sums() -> list[Any]:
    return [func.coalesce(func.sum(getattr(QuotaUsage, r)), 0) for r in QUOTA_RESOURCES]


def _as_usage(row: Any) -> dict[str, int]:
    return {resource: int(value) for resource, value in zip(QUOTA_RESOURCES, row, strict=True)}


def usage_for_tenant(tenant_id: int) -> dict[str, int]:
    """Resource → amount the tenant uses (in the units of QUOTA_RESOURCES)."""
    return _as_usage(db.session.execute(select(*_usage_sums()).where(QuotaUsage.tenant_id == tenant_id)).one())


def usage_for_tenants(tenant_ids: list[int]) -> dict[int, dict[str, int]]:
    """Usage of several tenants in one query (for the platform admins' overview)."""
    if not tenant_ids:
        return {}
    result = {tid: dict.fromkeys(QUOTA_RESOURCES, 0) for tid in tenant_ids}
    rows = db.session.execute(select(QuotaUsage.tenant_id, *_usage_sums())
                              .where(QuotaUsage.tenant_id.in_(tenant_ids)).group_by(QuotaUsage.tenant_id))
    for tenant_id, *sums in rows:
        result[tenant_id] = _as_usage(sums)
    return result


def usage_for_user(user_id: int) -> dict[str, int]:
    """Resource → amount held for this person (counts against per-user limits)."""
    return _as_usage(db.session.execute(select(*_usage_sums()).where(QuotaUsage.user_id == user_id)).one())


@functools.cache
def _usage_statement() -> Select[Any]:
    """Tenant usage and one person's usage in one query; built once (this runs under the lock,
    and constructing the statement costs more Python time than executing it)."""
    user_id: Any = bindparam("user_id")
    user_cols = [func.coalesce(func.sum(case((QuotaUsage.user_id == user_id, getattr(QuotaUsage, r)),
                                             else_=0)), 0) for r in QUOTA_RESOURCES]
    return select(*_usage_sums(), *user_cols).where(QuotaUsage.tenant_id == bindparam("tenant_id"))


def _tenant_and_user_usage(tenant_id: int, user_id: int) -> tuple[dict[str, int], dict[str, int]]:
    row = db.session.execute(_usage_statement(), {"tenant_id": tenant_id, "user_id": user_id}).one()
    n = len(QUOTA_RESOURCES)
    return _as_usage(row[:n]), _as_usage(row[n:])


@functools.cache
def _add_usage_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO UPDATE adding to one person's totals (both databases have it)."""
    from sqlalchemy.dialects import postgresql, sqlite
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(QuotaUsage).values(tenant_id=bindparam("tenant_id"), user_id=bindparam("user_id"),
                                          **{r: bindparam(r) for r in QUOTA_RESOURCES})
    table = QuotaUsage.__table__.c
    return statement.on_conflict_do_update(
        index_elements=[table.tenant_id, table.user_id],
        set_={r: table[r] + statement.excluded[r] for r in QUOTA_RESOURCES})


def add_usage(tenant_id: int, user_id: int, change: dict[str, int]) -> None:
    """Add ``change`` (resource → amount, negative to give back) to a person's usage totals, in
    the caller's transaction. Called by every reservation change that moves resources into or out
    of the counted states; the single UPDATE adds to the committed value, so concurrent changes
    for one person add up instead of overwriting each other."""
    amounts = {r: int(change.get(r, 0)) for r in QUOTA_RESOURCES}
    if not any(amounts.values()):
        return
    db.session.execute(_add_usage_statement(db.session.get_bind().dialect.name),
                       {"tenant_id": tenant_id, "user_id": user_id, **amounts})


def recount_usage(tenant_ids: list[int] | None = None) -> list[str]:
    """Rebuild the usage totals of ``tenant_ids`` (default: every tenant) from their reservations,
    in the caller's transaction; returns a sentence for each person whose totals were wrong.

    For data written around the services (bulk imports, the benchmarks' seeding, repairs by
    hand): the services themselves keep the totals right as they go.
    """
    counted = (select(QuotaReservation.tenant_id, QuotaReservation.user_id,
                      *[func.coalesce(func.sum(getattr(QuotaReservation, r)), 0) for r in QUOTA_RESOURCES])
               .where(QuotaReservation.state.in_(COUNTED_STATES))
               .group_by(QuotaReservation.tenant_id, QuotaReservation.user_id))
    kept = select(QuotaUsage.tenant_id, QuotaUsage.user_id, *[getattr(QuotaUsage, r) for r in QUOTA_RESOURCES])
    if tenant_ids is not None:
        counted = counted.where(QuotaReservation.tenant_id.in_(tenant_ids))
        kept = kept.where(QuotaUsage.tenant_id.in_(tenant_ids))
    should = {(t, u): _as_usage(sums) for t, u, *sums in db.session.execute(counted)}
    has = {(t, u): _as_usage(sums) for t, u, *sums in db.session.execute(kept)}
    zero = dict.fromkeys(QUOTA_RESOURCES, 0)
    corrections: list[str] = []
    for key in sorted(should.keys() | has.keys()):
        right, stored = should.get(key, zero), has.get(key, zero)
        if right != stored:
            tenant_id, user_id = key
            corrections.append(f"tenant {tenant_id}, person {user_id}: held {stored}, reservations say {right}")
            add_usage(tenant_id, user_id, {r: right[r] - stored[r] for r in QUOTA_RESOURCES})
    return corrections


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


def lock_tenant_in_transaction(tenant_id: int) -> None:
    """Take ``tenant_id``'s quota lock inside the session's current transaction (PostgreSQL; on
    SQLite the transaction's first write already excludes every other writer)."""
    db.session.execute(_lock_statement(), {"tenant_id": tenant_id}).all()


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
                raise NotFound(_("There is no tenant with id %(id)s.", id=self.tenant_id))
            limits = TenantLimits()
            for _row_id, scope, resource, limit in rows:
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



"""Quota reservations: the check and the hold are one serialised step, so concurrent requests
never overshoot a tenant's limit (SQLite and PostgreSQL), per-person limits, release, consume."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_portal.accounts.models import User
from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import PortalError, QuotaExceeded
from cloud_portal.extensions import db
from cloud_portal.quotas import service as quotas
from cloud_portal.quotas.models import (
    QUOTA_RESOURCES,
    RESERVATION_CONSUMED,
    RESERVATION_OPEN,
    RESERVATION_RELEASED,
    SCOPE_PER_USER,
    SCOPE_TENANT,
    QuotaLimit,
    QuotaReservation,
)
from cloud_portal.tenants.models import Tenant
from cloud_portal.tenants.service import get_tenant_by_slug

TORFAEN = "Torfaen County Borough Council"
LARGE = 1_000_000


def set_limits(tenant: Tenant, scope: str, **limits: int | None) -> None:
    """Replace the tenant's limits of one scope; resources not named get LARGE (tenant) or none."""
    db.session.execute(QuotaLimit.__table__.delete().where(
        QuotaLimit.tenant_id == tenant.id, QuotaLimit.scope == scope))
    for resource in QUOTA_RESOURCES:
        limit = limits.get(resource, LARGE if scope == SCOPE_TENANT else None)
        if limit is not None:
            db.session.add(QuotaLimit(tenant_id=tenant.id, scope=scope, resource=resource, limit=limit))
    db.session.commit()


@pytest.fixture
def torfaen(synced: None) -> Tenant:
    tenant = get_tenant_by_slug("torfaen")
    assert tenant is not None and tenant.name_en == TORFAEN
    set_limits(tenant, SCOPE_TENANT)
    set_limits(tenant, SCOPE_PER_USER)
    return tenant


def open_count(tenant_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(QuotaReservation).where(
        QuotaReservation.tenant_id == tenant_id, QuotaReservation.state.in_(quotas.COUNTED_STATES)))


def test_concurrent_reservations_never_overshoot(app: Any, torfaen: Tenant,
                                                 make_user: Callable[..., User]) -> None:
    attempts, room, size = 50, 10, 4
    set_limits(torfaen, SCOPE_TENANT, vcpus=room * size)
    user_ids = [make_user("member").id for _ in range(5)]
    tenant_id = torfaen.id
    barrier = threading.Barrier(attempts)
    accepted: list[int] = []
    refused: list[str] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        with app.app_context():
            try:
                tenant = db.session.get(Tenant, tenant_id)
                user = db.session.get(User, user_ids[i % len(user_ids)])
                # Hand the connection back to the pool (15 connections for 50 threads), then
                # everyone asks at once.
                db.session.commit()
                barrier.wait(timeout=60)
                reservation = quotas.reserve(tenant, user, instances=1, vcpus=size, ram_mib=1024,
                                             disk_gb=20, purpose=f"test:{i}")
                with lock:
                    accepted.append(reservation.id)
            except QuotaExceeded as exc:
                with lock:
                    refused.append(str(exc))
            except BaseException as exc:  # noqa: BLE001  (reported by the assertions below)
                with lock:
                    unexpected.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a reservation thread hung"
    assert unexpected == []
    assert len(accepted) == room
    assert len(refused) == attempts - room
    assert set(refused) == {f"{TORFAEN} has 0 of {room * size} vCPUs left; this request needs {size}."}
    assert open_count(tenant_id) == room
    assert quotas.usage_for_tenant(tenant_id)["vcpus"] == room * size
    reserve_events = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "quota.reserve", AuditEvent.tenant_id == tenant_id))
    assert reserve_events == room


def test_per_user_limit_is_independent_of_tenant_limit(torfaen: Tenant,
                                                       make_user: Callable[..., User]) -> None:
    set_limits(torfaen, SCOPE_TENANT, vcpus=20, desktops=3, instances=10)
    set_limits(torfaen, SCOPE_PER_USER, vcpus=8, desktops=2)
    alice, bob, carol = make_user("member"), make_user("member"), make_user("member")

    quotas.reserve(torfaen, alice, instances=1, desktops=1, vcpus=4, purpose="desktop:1")
    quotas.reserve(torfaen, alice, instances=1, desktops=1, vcpus=4, purpose="desktop:2")
    with pytest.raises(QuotaExceeded) as refused:
        quotas.reserve(torfaen, alice, instances=1, desktops=1, vcpus=2, purpose="desktop:3")
    # Alice is out of her own allowance although the tenant has room; every short resource is named.
    assert str(refused.value) == ("You have 0 of 8 vCPUs left; this request needs 2. "
                                  "You have 0 of 2 desktops left; this request needs 1.")

    # Bob has his own allowance; the tenant's third desktop is his.
    quotas.reserve(torfaen, bob, instances=1, desktops=1, vcpus=4, purpose="desktop:4")
    # Carol is within her allowance, but now the tenant is short.
    with pytest.raises(QuotaExceeded) as refused:
        quotas.reserve(torfaen, carol, instances=1, desktops=1, vcpus=4, purpose="desktop:5")
    assert str(refused.value) == f"{TORFAEN} has 0 of 3 desktops left; this request needs 1."
    quotas.reserve(torfaen, carol, instances=1, vcpus=8, purpose="vm:6")
    with pytest.raises(QuotaExceeded, match=f"^{TORFAEN} has 0 of 20 vCPUs left; this request needs 1"):
        quotas.reserve(torfaen, carol, instances=1, vcpus=1, purpose="vm:7")

    room = quotas.headroom(torfaen.id, alice.id)
    assert (room["vcpus"].tenant_left, room["vcpus"].user_left, room["vcpus"].available) == (0, 0, 0)
    assert room["desktops"].tenant_used == 3 and room["desktops"].user_used == 2
    assert room["ram_mib"].user_limit is None and room["ram_mib"].available == LARGE
    assert quotas.usage_for_user(alice.id)["desktops"] == 2
    assert quotas.usage_for_tenant(torfaen.id)["instances"] == 4


@pytest.mark.parametrize(("consumed_first", "reason"), [
    (False, "request failed"), (False, "request rejected"), (False, "request cancelled"),
    (True, "server deleted"),
])
def test_release_frees_headroom(torfaen: Tenant, make_user: Callable[..., User],
                                consumed_first: bool, reason: str) -> None:
    set_limits(torfaen, SCOPE_TENANT, instances=2)
    user = make_user("member")
    first = quotas.reserve(torfaen, user, instances=1, purpose="request:1")
    quotas.reserve(torfaen, user, instances=1, purpose="request:2")
    if consumed_first:
        quotas.consume(first.id)
        db.session.commit()
        assert db.session.get(QuotaReservation, first.id).state == RESERVATION_CONSUMED
    with pytest.raises(QuotaExceeded, match="has 0 of 2 instances left"):
        quotas.reserve(torfaen, user, instances=1, purpose="request:3")

    quotas.release(first.id, reason)
    db.session.commit()

    released = db.session.get(QuotaReservation, first.id)
    assert released.state == RESERVATION_RELEASED and released.release_reason == reason
    assert released.released_at is not None
    assert quotas.headroom(torfaen.id, user.id)["instances"].available == 1
    third = quotas.reserve(torfaen, user, instances=1, purpose="request:3")
    assert third.state == RESERVATION_OPEN


def test_releasing_twice_is_harmless(torfaen: Tenant, make_user: Callable[..., User]) -> None:
    set_limits(torfaen, SCOPE_TENANT, vcpus=8)
    user = make_user("member")
    reservation = quotas.reserve(torfaen, user, vcpus=8, purpose="request:1")
    for _ in range(2):
        quotas.release(reservation.id, "request cancelled")
        db.session.commit()
    quotas.release(reservation.id, "a later, different reason")
    db.session.commit()

    again = db.session.get(QuotaReservation, reservation.id)
    assert again.state == RESERVATION_RELEASED and again.release_reason == "request cancelled"
    assert quotas.usage_for_tenant(torfaen.id)["vcpus"] == 0
    actions = list(db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.target_type == "quota_reservation", AuditEvent.target_id == str(reservation.id))
        .order_by(AuditEvent.id)))
    assert actions == ["quota.reserve", "quota.release"]
    with pytest.raises(PortalError, match="was released"):
        quotas.consume(reservation.id)


def test_consume_is_idempotent_and_still_counts(torfaen: Tenant, make_user: Callable[..., User]) -> None:
    set_limits(torfaen, SCOPE_TENANT, vcpus=8)
    user = make_user("member")
    reservation = quotas.reserve(torfaen, user, vcpus=8, purpose="request:1")
    quotas.consume(reservation.id)
    quotas.consume(reservation.id)
    db.session.commit()
    assert db.session.get(QuotaReservation, reservation.id).state == RESERVATION_CONSUMED
    assert quotas.usage_for_tenant(torfaen.id)["vcpus"] == 8
    with pytest.raises(QuotaExceeded):
        quotas.reserve(torfaen, user, vcpus=1, purpose="request:2")


def test_reserve_inside_a_serialised_block_shares_its_transaction(
        torfaen: Tenant, make_user: Callable[..., User]) -> None:
    set_limits(torfaen, SCOPE_TENANT, vcpus=8)
    user = make_user("member")
    with pytest.raises(RuntimeError, match="boom"), quotas.serialised_for_tenant(torfaen.id):
        quotas.reserve(torfaen, user, vcpus=8, purpose="request:1")
        raise RuntimeError("boom")  # e.g. creating the request row failed
    assert quotas.usage_for_tenant(torfaen.id)["vcpus"] == 0  # rolled back together

    with quotas.serialised_for_tenant(torfaen.id):
        quotas.reserve(torfaen, user, vcpus=8, purpose="request:2")
    db.session.rollback()  # nothing left to roll back: the block committed
    assert quotas.usage_for_tenant(torfaen.id)["vcpus"] == 8


def test_tenant_without_a_quota_is_refused_and_bad_input_rejected(
        torfaen: Tenant, make_user: Callable[..., User]) -> None:
    from cloud_portal.errors import InvalidInput
    db.session.execute(QuotaLimit.__table__.delete().where(
        QuotaLimit.tenant_id == torfaen.id, QuotaLimit.resource == "desktops"))
    db.session.commit()
    user = make_user("member")
    with pytest.raises(QuotaExceeded, match=f"^{TORFAEN} has no quota for desktops"):
        quotas.reserve(torfaen, user, instances=1, desktops=1, purpose="desktop:1")
    with pytest.raises(InvalidInput):
        quotas.reserve(torfaen, user, vcpus=-1, purpose="request:1")
    outsider = make_user("member", tenant="monmouthshire")
    with pytest.raises(InvalidInput, match="not a member"):
        quotas.reserve(torfaen, outsider, vcpus=1, purpose="request:1")
    assert open_count(torfaen.id) == 0

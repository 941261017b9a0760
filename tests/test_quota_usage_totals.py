"""Quota usage totals (``quota_usage``): every reservation change keeps each person's totals equal
to the sum of their counted reservations, concurrent changes add up on both databases, and
``recount_usage`` / ``cloud-portal quotas recount`` put right totals changed around the portal."""
from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update

from cloud_portal.accounts.models import User
from cloud_portal.errors import QuotaExceeded
from cloud_portal.extensions import db
from cloud_portal.quotas import service as quotas
from cloud_portal.quotas.models import QUOTA_RESOURCES, RESERVATION_OPEN, SCOPE_TENANT, QuotaReservation, QuotaUsage
from cloud_portal.tenants.models import Tenant
from tests.test_cli import cli  # noqa: F401  (fixture: the command line in a subprocess)
from tests.test_quota_reservations import set_limits, torfaen  # noqa: F401  (fixture)


def summed_from_reservations(**where: int) -> dict[str, int]:
    """What the totals must say, summed the slow way."""
    columns = [func.coalesce(func.sum(getattr(QuotaReservation, r)), 0) for r in QUOTA_RESOURCES]
    conditions = [getattr(QuotaReservation, k) == v for k, v in where.items()]
    row = db.session.execute(select(*columns).where(
        QuotaReservation.state.in_(quotas.COUNTED_STATES), *conditions)).one()
    return {r: int(v) for r, v in zip(QUOTA_RESOURCES, row, strict=True)}


def test_totals_follow_every_reservation_change(torfaen: Tenant, make_user: Callable[..., User]) -> None:  # noqa: F811
    people = [make_user("member") for _ in range(3)]
    rng = random.Random(7)
    held: list[int] = []
    for step in range(60):
        choice = rng.random()
        if choice < 0.5 or not held:
            person = rng.choice(people)
            reservation = quotas.reserve(torfaen, person, instances=1, vcpus=rng.randint(1, 8),
                                         ram_mib=1024 * rng.randint(1, 4), disk_gb=rng.choice((20, 40)),
                                         desktops=rng.randint(0, 1), purpose=f"step:{step}")
            held.append(reservation.id)
        elif choice < 0.7:
            chosen = db.session.get(QuotaReservation, rng.choice(held))
            if chosen.state == RESERVATION_OPEN:
                quotas.consume(chosen.id)
                db.session.commit()
        elif choice < 0.85:
            with quotas.serialised_for_tenant(torfaen.id):
                quotas.resize_held(rng.choice(held), vcpus=rng.randint(1, 16), ram_mib=2048, disk_gb=80)
        else:
            quotas.release(rng.choice(held), "test")  # sometimes twice: changes nothing the second time
            db.session.commit()
        for person in people:
            assert quotas.usage_for_user(person.id) == summed_from_reservations(user_id=person.id), step
        assert quotas.usage_for_tenant(torfaen.id) == summed_from_reservations(tenant_id=torfaen.id), step
    assert quotas.recount_usage() == []
    headroom = quotas.headroom(torfaen.id, people[0].id)
    assert {r: h.user_used for r, h in headroom.items()} == summed_from_reservations(user_id=people[0].id)


def test_a_refused_reservation_leaves_the_totals_alone(torfaen: Tenant, make_user: Callable[..., User]) -> None:  # noqa: F811
    set_limits(torfaen, SCOPE_TENANT, vcpus=4)
    person = make_user("member")
    quotas.reserve(torfaen, person, instances=1, vcpus=4, purpose="fits")
    try:
        quotas.reserve(torfaen, person, instances=1, vcpus=1, purpose="does not fit")
    except QuotaExceeded:
        pass
    else:
        raise AssertionError("the second reservation should have been refused")
    assert quotas.usage_for_user(person.id)["vcpus"] == 4
    assert quotas.usage_for_tenants([torfaen.id])[torfaen.id]["instances"] == 1


def test_concurrent_reserves_and_releases_add_up(app: Any, torfaen: Tenant,  # noqa: F811
                                                make_user: Callable[..., User]) -> None:
    """Releases (no tenant lock) and reservations (under it) for the same people at once: no
    deadlock on PostgreSQL, no lost update on either database."""
    people = [make_user("member").id for _ in range(2)]
    tenant_id = torfaen.id
    first = [quotas.reserve(torfaen, db.session.get(User, people[i % 2]), instances=1, vcpus=2,
                            purpose=f"before:{i}").id for i in range(12)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(24)

    def work(i: int) -> None:
        with app.app_context():
            try:
                db.session.commit()
                barrier.wait(timeout=60)
                if i < 12:
                    quotas.release(first[i], "concurrent test")
                    db.session.commit()
                else:
                    quotas.reserve(db.session.get(Tenant, tenant_id), db.session.get(User, people[i % 2]),
                                   instances=1, vcpus=3, purpose=f"during:{i}")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    db.session.expire_all()
    for person in people:
        assert quotas.usage_for_user(person) == summed_from_reservations(user_id=person)
        assert quotas.usage_for_user(person)["vcpus"] == 6 * 3
    assert quotas.recount_usage() == []


def test_recount_puts_wrong_totals_right(cli: Any, torfaen: Tenant, make_user: Callable[..., User]) -> None:  # noqa: F811
    person = make_user("member")
    quotas.reserve(torfaen, person, instances=1, vcpus=2, ram_mib=2048, disk_gb=40, purpose="real")
    # Someone edits the table by hand: the person's total is wrong, and a stray row appears.
    other = make_user("member")
    db.session.execute(update(QuotaUsage).where(QuotaUsage.user_id == person.id).values(vcpus=99))
    db.session.add(QuotaUsage(tenant_id=torfaen.id, user_id=other.id, instances=3, vcpus=0, ram_mib=0,
                              disk_gb=0, desktops=0))
    db.session.commit()
    assert quotas.usage_for_tenant(torfaen.id)["vcpus"] == 99

    result = cli("quotas", "recount", "--tenant", "torfaen")
    assert result.returncode == 0, result.stderr
    assert "2 usage totals corrected" in result.stdout
    assert f"person {person.id}" in result.stdout and "'vcpus': 99" in result.stdout
    db.session.expire_all()
    assert quotas.usage_for_user(person.id) == {"instances": 1, "vcpus": 2, "ram_mib": 2048, "disk_gb": 40,
                                                 "desktops": 0}
    assert quotas.usage_for_user(other.id) == dict.fromkeys(QUOTA_RESOURCES, 0)
    again = cli("quotas", "recount")
    assert again.returncode == 0 and "every usage total was right" in again.stdout
    wrong = cli("quotas", "recount", "--tenant", "nobody")
    assert wrong.returncode != 0 and "No tenant 'nobody'" in wrong.stderr

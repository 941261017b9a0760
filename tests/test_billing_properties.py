"""Properties of the billing arithmetic and the ledger, checked over many generated cases (hypothesis)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud_portal.billing import charges
from cloud_portal.billing.models import UsageInterval
from cloud_portal.timeutil import epoch_micros

LONDON = ZoneInfo("Europe/London")
PRICES = {key: [charges.PriceVersion(key, date(2000, 1, 1), Decimal(price))]
          for key, price in (("vcpu_hour", "0.0150"), ("ram_gb_hour", "0.0050"), ("disk_gb_month", "0.0400"))}
START = datetime(2027, 9, 1, tzinfo=UTC)  # lifetimes cross October's and March's clock changes

segment = st.tuples(st.integers(min_value=60, max_value=40 * 86400),  # seconds
                    st.booleans(),  # running?
                    st.sampled_from([(1, 2048, 20), (2, 4096, 40), (8, 16384, 160)]))


def _intervals(offset_s: int, segments: list[tuple[int, bool, tuple[int, int, int]]]) -> list[charges.Interval]:
    out, at = [], START + timedelta(seconds=offset_s)
    for seconds, running, (vcpus, ram, disk) in segments:
        end = at + timedelta(seconds=seconds)
        out.append(charges.Interval(1, 7, 3, "vm", "cc", vcpus, ram, disk, running, at, end))
        at = end
    return out


def _months(first: datetime, last: datetime) -> list[str]:
    months, month = [], charges.month_of(first, LONDON)
    while month <= charges.month_of(last, LONDON):
        months.append(month)
        month = charges.next_month(month)
    return months


@settings(max_examples=150, deadline=None)
@given(offset=st.integers(min_value=0, max_value=200 * 86400), segments=st.lists(segment, min_size=1, max_size=8))
def test_monthly_lines_add_up_to_the_lifetime_charge(offset: int, segments: list[Any]) -> None:
    intervals = _intervals(offset, segments)
    lines = [line for month in _months(intervals[0].start, intervals[-1].end or START)
             for line in charges.month_lines(intervals, PRICES, month, LONDON)]
    # Compute and RAM do not depend on month lengths: the lifetime charge is worked out directly.
    # Exactly (fractions): a line's true value can sit on a half penny, which Decimal's 28 digits miss.
    for component, rate, per_interval in (
            ("vcpu", Fraction("0.0150"), lambda i: i.vcpus), ("ram", Fraction("0.0050"), lambda i: Fraction(i.ram_mib, 1024))):
        lifetime = sum((Fraction(int((i.end - i.start).total_seconds()), 3600) * per_interval(i) * rate
                        for i in intervals if i.running and i.end), Fraction(0))
        billed = [line for line in lines if line.key.component == component]
        assert abs(sum((Fraction(line.amount) for line in billed), Fraction(0)) - lifetime) \
            <= Fraction("0.005") * max(1, len(billed))
    # Disk is prorated by the seconds of each calendar month: a month wholly inside the lifetime
    # bills between the smallest and the largest disk in GB-months, whatever its length (28 to 31
    # days, 743 or 745 hours); with one size all along it is exactly that size.
    disks = [d for *_, (v, r, d) in segments]
    for month in _months(intervals[0].start, intervals[-1].end or START):
        start, end = charges.month_bounds(month, LONDON)
        if start >= intervals[0].start and end <= (intervals[-1].end or START):
            gb_months = sum((line.quantity for line in charges.month_lines(intervals, PRICES, month, LONDON)
                             if line.key.component == "disk"), Decimal(0))
            assert min(disks) - Decimal("1e-9") <= gb_months <= max(disks) + Decimal("1e-9")
            if len(set(disks)) == 1:
                assert abs(gb_months - disks[0]) < Decimal("1e-9")


@settings(max_examples=150, deadline=None)
@given(offset=st.integers(min_value=0, max_value=200 * 86400), segments=st.lists(segment, min_size=1, max_size=6),
       cut=st.floats(min_value=0.01, max_value=0.99))
def test_splitting_an_interval_changes_no_line(offset: int, segments: list[Any], cut: float) -> None:
    """A change that alters nothing billed (a reboot, say) must not change any amount."""
    whole = _intervals(offset, segments)
    first = whole[0]
    at = first.start + timedelta(seconds=int((first.end - first.start).total_seconds() * cut))  # type: ignore[operator]
    split = [charges.Interval(**{**first.__dict__, "end": at}), charges.Interval(**{**first.__dict__, "start": at}),
             *whole[1:]]
    for month in _months(whole[0].start, whole[-1].end or START):
        a = {line.key: line.amount for line in charges.month_lines(whole, PRICES, month, LONDON)}
        b = {line.key: line.amount for line in charges.month_lines(split, PRICES, month, LONDON)}
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) <= Decimal("0.01") for k in a)


transition_step = st.tuples(st.integers(min_value=1, max_value=10 * 86400),
                            st.sampled_from(["stop", "start", "error", "resize", "transfer", "reboot"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(transition_step, min_size=0, max_size=10))
def test_ledger_has_no_gaps_or_overlaps(make_user: Any, steps: list[tuple[int, str]]) -> None:
    """From first ACTIVE to deletion a server's intervals follow each other exactly, one open at most."""
    from cloud_portal.catalog.models import VmSize
    from cloud_portal.extensions import db
    from cloud_portal.provisioning import servers
    from tests.helpers import server_seen_active
    owner, other = make_user("member", "torfaen"), make_user("member", "torfaen")
    sizes = list(db.session.scalars(select(VmSize).where(VmSize.key.in_(("small", "medium")))))
    when = datetime(2026, 10, 20, tzinfo=UTC)
    server = server_seen_active(owner, f"p{owner.id}", when)
    for gap, step in steps:
        when += timedelta(seconds=gap)
        if step == "transfer":
            servers.transition(server, cause=step, at=when, owner_id=other.id if server.owner_id == owner.id else owner.id)
        elif step == "resize":
            servers.transition(server, cause=step, at=when, size=sizes[0] if server.vcpus != sizes[0].vcpus else sizes[1])
        else:
            status = {"stop": "SHUTOFF", "start": "ACTIVE", "error": "ERROR", "reboot": server.status}[step]
            servers.transition(server, cause=step, at=when, status=status)
        db.session.commit()
    servers.mark_deleted(server, "gone", at=when + timedelta(hours=1))
    rows = list(db.session.scalars(select(UsageInterval).where(UsageInterval.server_id == server.id)
                                   .order_by(UsageInterval.started_at, UsageInterval.id)))
    assert rows[0].started_at == datetime(2026, 10, 20, tzinfo=UTC)
    assert rows[-1].ended_at == when + timedelta(hours=1)
    assert all(r.ended_at is not None and r.ended_at >= r.started_at for r in rows)
    assert all(a.ended_at == b.started_at for a, b in zip(rows, rows[1:], strict=False))
    # The microsecond copies the charge sums read are in step with the timestamps.
    assert all(r.started_us == epoch_micros(r.started_at) for r in rows)
    assert all(r.ended_us == epoch_micros(r.ended_at) for r in rows if r.ended_at is not None)


def test_the_database_sums_the_ledger_exactly_as_the_arithmetic_does(make_user: Any) -> None:
    """``ledger.usage_between`` (summed by the database, which closing a month relies on) equals
    ``charges.usage_of`` over the same intervals, to the microsecond, for windows of every kind:
    whole months across clock changes, a window inside one interval, open intervals."""
    import random

    from cloud_portal.billing import ledger
    from cloud_portal.extensions import db
    from tests.helpers import server_seen_active
    rng = random.Random(20261203)
    people = [make_user("member", "torfaen"), make_user("member", "torfaen"), make_user("member", "monmouthshire")]
    servers = [server_seen_active(person, f"sum{n}", datetime(2027, 1, 1, tzinfo=UTC))
               for n, person in enumerate(people * 2)]
    db.session.execute(UsageInterval.__table__.delete())
    rows = []
    for n, server in enumerate(servers):
        at = datetime(2027, 9, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**12))
        for i in range(rng.randint(5, 25)):
            vcpus, ram, disk = rng.choice([(1, 2048, 20), (2, 4096, 40), (8, 16384, 160)])
            end = at + timedelta(microseconds=rng.randrange(1, 20 * 86400 * 10**6))
            if i % 4 == 1:  # a fraction just short of the next second (SQLite rounds those to milliseconds)
                end = end.replace(microsecond=999_600 + rng.randrange(400))
            is_last = i == 24 or rng.random() < 0.05
            kind = "desktop" if n % 3 == 2 else "vm"
            rows.append({"server_id": server.id, "owner_id": server.owner_id, "tenant_id": server.tenant_id,
                         "kind": kind, "catalog_key": "office" if kind == "desktop" else "m1.small",
                         "vcpus": vcpus, "ram_mib": ram, "disk_gb": disk, "state": rng.choice(["running", "stopped"]),
                         "started_at": at, "ended_at": None if is_last and n % 2 else end, "cause": "test"})
            rows[-1].update(started_us=epoch_micros(at),
                            ended_us=None if rows[-1]["ended_at"] is None else epoch_micros(end))
            at = end
            if is_last:
                break
    db.session.execute(UsageInterval.__table__.insert(), rows)
    db.session.commit()
    windows = [charges.month_bounds(month, LONDON) for month in ("2027-09", "2027-10", "2027-11", "2028-02", "2028-03")]
    first = rows[0]
    inside = first["started_at"] + timedelta(microseconds=7)
    windows += [(inside, inside + timedelta(seconds=1, microseconds=3)),
                (datetime(2027, 9, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC))]
    for begin, end in windows:
        for scope in ({}, {"owner_id": people[0].id}, {"tenant_id": people[2].tenant_id},
                      {"server_id": servers[1].id}):
            by_db = sorted(ledger.usage_between(begin, end, **scope), key=repr)
            by_arithmetic = sorted(charges.usage_of(ledger.intervals_between(begin, end, **scope), begin, end),
                                   key=repr)
            assert by_db == by_arithmetic, (begin, end, scope)
            assert by_db or scope, (begin, end)

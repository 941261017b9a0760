"""Properties of the billing arithmetic and the ledger, checked over many generated cases (hypothesis)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
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


@pytest.mark.parametrize("rates_change", [True, False], ids=["rates-change-in-the-month", "one-rate-all-month"])
def test_a_closed_month_has_exactly_the_lines_the_arithmetic_gives(app: Any, make_user: Any, tmp_path: Any,
                                                                   rates_change: bool) -> None:
    """Closing a month writes the lines of ``months.computed_lines`` — the Python arithmetic —
    line for line, to the micro-unit and the penny. On PostgreSQL the close prices the lines in
    SQL (``months._insert_lines_priced_by_database``), so this compares two implementations:
    random VMs and desktops, running and stopped, intervals with odd microseconds, rate and
    desktop-price changes in the middle of the month (and one a day after it begins, so a
    segment starts at a version boundary), servers open at the month end, a desktop with no
    price (not charged), and rates with awkward fractions (ties in rounding)."""
    import random

    import yaml

    from cloud_portal.billing import months
    from cloud_portal.billing.models import BillingMonth
    from cloud_portal.extensions import db
    from cloud_portal.provisioning.models import ReconcileRun
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import sync_tenants
    from cloud_portal.timeutil import frozen_at
    from tests.conftest import TENANTS_FILE
    from tests.helpers import server_seen_active

    doc = yaml.safe_load(TENANTS_FILE.read_text())
    doc["rate_card"]["changes"] = [] if not rates_change else [
        {"effective_from": "2027-10-02", "vcpu_hour": "0.0133", "ram_gb_hour": "0.00625", "disk_gb_month": "0.0375"},
        {"effective_from": "2027-10-15", "vcpu_hour": "0.0125", "ram_gb_hour": "0.0047", "disk_gb_month": "0.0401"}]
    for desktop in doc["catalog"]["desktops"]:
        if desktop["key"] == "office-windows" and rates_change:
            desktop["price_changes"] = [{"effective_from": "2027-10-20", "monthly_price": "47.55"}]
    changed = tmp_path / "tenants.yaml"
    changed.write_text(yaml.safe_dump(doc))
    sync_tenants(load_tenants_file(changed))
    db.session.commit()

    rng = random.Random(20271031)
    people = [make_user("member", "torfaen"), make_user("member", "torfaen"), make_user("member", "monmouthshire"),
              make_user("member", "blaenau-gwent")]
    servers = [server_seen_active(person, f"close{n}", datetime(2027, 1, 1, tzinfo=UTC))
               for n, person in enumerate(people * 4)]
    db.session.execute(UsageInterval.__table__.delete())
    rows = []
    for n, server in enumerate(servers):
        at = datetime(2027, 9, 20, tzinfo=UTC) + timedelta(microseconds=rng.randrange(20 * 86400 * 10**6))
        kind = "desktop" if n % 4 == 3 else "vm"
        desktop_key = ["office-linux", "office-windows", "analyst-windows", "no-such-desktop"][n // 4 % 4]
        for _ in range(rng.randint(1, 30)):
            vcpus, ram, disk = rng.choice([(1, 2048, 20), (2, 4096, 40), (8, 16384, 160), (3, 3000, 0)])
            end = at + timedelta(microseconds=rng.randrange(1, 6 * 86400 * 10**6))
            is_last = rng.random() < 0.05 or end > datetime(2027, 11, 10, tzinfo=UTC)
            rows.append({"server_id": server.id, "owner_id": server.owner_id, "tenant_id": server.tenant_id,
                         "kind": kind, "catalog_key": desktop_key if kind == "desktop" else "cc.small",
                         "vcpus": vcpus, "ram_mib": ram, "disk_gb": disk, "state": rng.choice(["running", "stopped"]),
                         "started_at": at, "ended_at": None if is_last and n % 2 else end, "cause": "test"})
            rows[-1].update(started_us=epoch_micros(at),
                            ended_us=None if rows[-1]["ended_at"] is None else epoch_micros(end))
            at = end
            if is_last:
                break
    # Exact ties: 1,800 µs of one vCPU is 0.0000005 vCPU-hours (half-even: 0.000000), 5,400 µs
    # 0.0000015 (0.000002); an Office Linux desktop (£30.00) for 447 s of October's 745 hours
    # is exactly half a penny (half-up: 1p).
    tie_owner = make_user("member", "monmouthshire")
    ties = [server_seen_active(tie_owner, f"tie{n}", datetime(2027, 1, 1, tzinfo=UTC)) for n in range(3)]
    db.session.execute(UsageInterval.__table__.delete())  # (their own first ACTIVE opened intervals)
    middle = datetime(2027, 10, 10, 12, tzinfo=UTC)
    for server, kind, key, length in ((ties[0], "vm", "cc.small", timedelta(microseconds=1800)),
                                      (ties[1], "vm", "cc.small", timedelta(microseconds=5400)),
                                      (ties[2], "desktop", "office-linux", timedelta(seconds=447))):
        rows.append({"server_id": server.id, "owner_id": server.owner_id, "tenant_id": server.tenant_id,
                     "kind": kind, "catalog_key": key, "vcpus": 1, "ram_mib": 1024, "disk_gb": 0, "state": "running",
                     "started_at": middle, "ended_at": middle + length, "cause": "test",
                     "started_us": epoch_micros(middle), "ended_us": epoch_micros(middle + length)})
    db.session.execute(UsageInterval.__table__.insert(), rows)
    db.session.add(ReconcileRun(finished_at=datetime(2027, 11, 1, 1, 5, tzinfo=UTC)))
    db.session.commit()

    with frozen_at(datetime(2027, 11, 2, tzinfo=UTC)):
        expected = months.computed_lines("2027-10")
        result = months.close_month("2027-10", "test")
    written = months.closed_lines("2027-10")  # in the order statements are read (months.STATEMENT_ORDER)
    assert db.session.get(BillingMonth, "2027-10") is not None
    cost_centres = {p.tenant_id: p.tenant.cost_centre for p in people}
    as_written = [(r.tenant_id, r.cost_centre, r.owner_id, r.server_id, r.component, r.rate_key, r.rate_from,
                   r.quantity, r.unit, r.rate, r.amount, r.adjusts_month, r.adjusts_line_id) for r in written]
    as_computed = [(k.tenant_id, cost_centres[k.tenant_id], k.owner_id, k.server_id, k.component, k.rate_key,
                    k.rate_from, line.quantity.quantize(Decimal("0.000001")), line.unit, line.rate, line.amount,
                    None, None) for line in expected for k in [line.key]]
    assert as_written == as_computed
    components = {r.component for r in written}
    assert components == {"vcpu", "ram", "disk", "desktop"}, components
    if rates_change:
        assert {r.rate_from for r in written} >= {date(2027, 10, 2), date(2027, 10, 15), date(2027, 10, 20)}
    else:
        assert len({r.rate_from for r in written}) == 1
    by_server = {(r.server_id, r.component): (r.quantity, r.amount) for r in written}
    assert by_server[(ties[0].id, "vcpu")] == (Decimal("0.000000"), Decimal("0.00"))
    assert by_server[(ties[1].id, "vcpu")] == (Decimal("0.000002"), Decimal("0.00"))
    assert by_server[(ties[2].id, "desktop")][1] == Decimal("0.01")
    assert result.line_count == len(expected) and result.total == sum(line.amount for line in expected)

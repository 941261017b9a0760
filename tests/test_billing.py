"""Billing against figures worked out by hand: the ledger, versioned rates, month close, adjustments.

Rates (tenants.yaml): vcpu_hour £0.0150, ram_gb_hour £0.0050, disk_gb_month £0.0400; this test's
file adds a rate change from 15 November 2026 (vcpu_hour £0.0200; RAM and disk unchanged but a
new version, so their lines split too). Office desktop (Windows) £45.00 a month.
November 2026 in Europe/London is GMT: 30 days, 720 hours. October 2026 has 745 hours (clocks
went back on the 25th). February 2028 has 29 days.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, text

from cloud_portal.audit.models import AuditEvent
from cloud_portal.billing import months
from cloud_portal.billing.models import StatementLine, UsageInterval
from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import servers
from cloud_portal.tenants.config_file import load_tenants_file
from cloud_portal.tenants.service import sync_tenants
from cloud_portal.timeutil import frozen_at
from tests.conftest import TENANTS_FILE
from tests.helpers import server_seen_active, utc


@pytest.fixture
def rate_change(app: Any, synced: None, tmp_path: Path) -> None:
    """tenants.yaml with a rate change from 15 November 2026."""
    doc = yaml.safe_load(TENANTS_FILE.read_text())
    doc["rate_card"]["changes"] = [{"effective_from": "2026-11-15", "vcpu_hour": "0.0200",
                                    "ram_gb_hour": "0.0050", "disk_gb_month": "0.0400"}]
    changed = tmp_path / "tenants.yaml"
    changed.write_text(yaml.safe_dump(doc))
    sync_tenants(load_tenants_file(changed))
    db.session.commit()




def _change(server: m.Server, when: datetime, **change: Any) -> None:
    servers.transition(server, cause="test", at=when, **change)
    db.session.commit()


def _by_key(lines: list[months.StatementRow]) -> dict[tuple[int, int, str, str], Decimal]:
    return {(row.owner_id, row.server_id, row.component, str(row.rate_from)): row.amount for row in lines}


def test_the_november_scenario(make_user: Any, rate_change: None) -> None:
    from cloud_portal.catalog.models import VmSize
    alys, bryn = make_user("member", "torfaen"), make_user("member", "torfaen")
    medium = db.session.scalar(select(VmSize).where(VmSize.key == "medium"))
    # B: Bryn's large VM, first ACTIVE on 31 October at noon, given to Alys on the 10th, deleted on the 12th.
    b = server_seen_active(bryn, "bee", utc("2026-10-31T12:00:00"), size="large")
    _change(b, utc("2026-11-10T00:00:00"), owner_id=alys.id)
    servers.mark_deleted(b, "deleted by its owner", at=utc("2026-11-12T00:00:00"))
    # A: Alys's small VM from 1 November: stopped the 5th, started the 6th, resized to medium the 20th,
    # deleted on 3 December (an interval across the month end).
    a = server_seen_active(alys, "aye", utc("2026-11-01T00:00:00"))
    _change(a, utc("2026-11-05T00:00:00"), status="SHUTOFF")
    _change(a, utc("2026-11-06T00:00:00"), status="ACTIVE")
    _change(a, utc("2026-11-20T00:00:00"), size=medium)
    servers.mark_deleted(a, "deleted by its owner", at=utc("2026-12-03T00:00:00"))
    # D: Alys's Windows desktop from the 10th, stopped on the 25th (a desktop is billed all the same).
    d = server_seen_active(alys, "desk", utc("2026-11-10T00:00:00"), kind="desktop", size="office-windows")
    _change(d, utc("2026-11-25T00:00:00"), status="SHUTOFF")

    with frozen_at(utc("2027-01-05T00:00:00")):
        _, october = months.statement("2026-10")
        _, november = months.statement("2026-11")
        _, december = months.statement("2026-12")
    old, new = "2000-01-01", "2026-11-15"
    assert _by_key(october) == {
        # 12 h in a 745-hour October: 48 vCPU-h × 0.015; 96 GB-h × 0.005; 80 GB × 12/745 × 0.04 = 0.0515
        (bryn.id, b.id, "vcpu", old): Decimal("0.72"), (bryn.id, b.id, "ram", old): Decimal("0.48"),
        (bryn.id, b.id, "disk", old): Decimal("0.05")}
    assert _by_key(november) == {
        # B, Bryn's 9 days (216 h): 864 vCPU-h × 0.015; 1,728 GB-h × 0.005; 80 × 9/30 = 24 GB-months × 0.04
        (bryn.id, b.id, "vcpu", old): Decimal("12.96"), (bryn.id, b.id, "ram", old): Decimal("8.64"),
        (bryn.id, b.id, "disk", old): Decimal("0.96"),
        # B, Alys's 2 days (48 h): 192 × 0.015; 384 × 0.005; 80 × 2/30 = 5.333 × 0.04 = 0.2133
        (alys.id, b.id, "vcpu", old): Decimal("2.88"), (alys.id, b.id, "ram", old): Decimal("1.92"),
        (alys.id, b.id, "disk", old): Decimal("0.21"),
        # A before the 15th: running 96 h + 216 h = 312 vCPU-h × 0.015 = 4.68; 624 GB-h × 0.005 = 3.12;
        # disk 20 GB × 14/30 = 9.333 GB-months × 0.04 = 0.3733 (stopped day included)
        (alys.id, a.id, "vcpu", old): Decimal("4.68"), (alys.id, a.id, "ram", old): Decimal("3.12"),
        (alys.id, a.id, "disk", old): Decimal("0.37"),
        # A from the 15th: 120 h small (15th–20th) + 264 h medium (20th–1 Dec, 11 days):
        # 120 + 528 = 648 vCPU-h × 0.020 = 12.96; 240 + 1,056 = 1,296 GB-h × 0.005 = 6.48;
        # 20 × 5/30 + 40 × 11/30 = 18 GB-months × 0.04 = 0.72
        (alys.id, a.id, "vcpu", new): Decimal("12.96"), (alys.id, a.id, "ram", new): Decimal("6.48"),
        (alys.id, a.id, "disk", new): Decimal("0.72"),
        # D: £45 × 21/30 days, running or stopped
        (alys.id, d.id, "desktop", old): Decimal("31.50")}
    assert _by_key(december) == {
        # A, 1–3 December (48 h, medium, December has 744 h): 96 × 0.02; 192 × 0.005; 40 × 2/31 × 0.04 = 0.1032
        (alys.id, a.id, "vcpu", new): Decimal("1.92"), (alys.id, a.id, "ram", new): Decimal("0.96"),
        (alys.id, a.id, "disk", new): Decimal("0.10"),
        # D all December: £45
        (alys.id, d.id, "desktop", old): Decimal("45.00")}
    alys_total = sum(v for (owner, *_), v in _by_key(november).items() if owner == alys.id)
    assert alys_total == Decimal("64.84")  # 28.33 (A) + 5.01 (B) + 31.50 (D)


def test_february_in_a_leap_year(make_user: Any, synced: None) -> None:
    member = make_user("member", "torfaen")
    server = server_seen_active(member, "leap", utc("2028-01-31T23:00:00"))
    _change(server, utc("2028-03-01T00:00:00"), status="SHUTOFF")
    with frozen_at(utc("2028-03-02T00:00:00")):
        _, february = months.statement("2028-02", owner_id=member.id)
    # 29 days = 696 h: 696 vCPU-h × 0.015 = 10.44; 1,392 GB-h × 0.005 = 6.96; 20 GB × 1 month × 0.04 = 0.80
    assert {row.component: row.amount for row in february} == {
        "vcpu": Decimal("10.44"), "ram": Decimal("6.96"), "disk": Decimal("0.80")}


def test_ledger_intervals_follow_the_transitions(make_user: Any, synced: None) -> None:
    member = make_user("member", "torfaen")
    server = server_seen_active(member, "web", utc("2026-11-01T00:00:00"))
    _change(server, utc("2026-11-01T06:00:00"), status="ACTIVE")  # a reboot: nothing billed changed
    _change(server, utc("2026-11-02T00:00:00"), status="SHUTOFF")
    _change(server, utc("2026-11-03T00:00:00"), status="ERROR")  # errored: disk only, as stopped
    servers.mark_deleted(server, "gone", at=utc("2026-11-04T00:00:00"))
    rows = db.session.execute(select(UsageInterval.state, UsageInterval.started_at, UsageInterval.ended_at)
                              .where(UsageInterval.server_id == server.id).order_by(UsageInterval.started_at)).all()
    assert rows == [("running", utc("2026-11-01T00:00:00"), utc("2026-11-02T00:00:00")),
                    ("stopped", utc("2026-11-02T00:00:00"), utc("2026-11-04T00:00:00"))]
    # The database allows one open interval per server.
    db.session.add(UsageInterval(server_id=server.id, owner_id=member.id, tenant_id=member.tenant_id, kind="vm",
                                 catalog_key="cc.small", vcpus=1, ram_mib=2048, disk_gb=20, state="running",
                                 started_at=utc("2026-11-05T00:00:00"), cause="test"))
    db.session.add(UsageInterval(server_id=server.id, owner_id=member.id, tenant_id=member.tenant_id, kind="vm",
                                 catalog_key="cc.small", vcpus=1, ram_mib=2048, disk_gb=20, state="running",
                                 started_at=utc("2026-11-06T00:00:00"), cause="test"))
    with pytest.raises(Exception, match="(?i)unique"):
        db.session.flush()
    db.session.rollback()


def test_closing_a_month(make_user: Any, synced: None) -> None:
    member = make_user("member", "torfaen")
    server = server_seen_active(member, "web", utc("2026-11-01T00:00:00"))
    with frozen_at(utc("2026-11-20T00:00:00")):
        with pytest.raises(InvalidInput, match="has not ended yet"):
            months.close_month("2026-11", "test")
    with frozen_at(utc("2026-12-01T00:00:10")):
        with pytest.raises(InvalidInput, match="No reconciliation has completed"):
            months.close_month("2026-11", "test")
        db.session.add(m.ReconcileRun())
        job = m.Job(id="j-1", kind=m.JOB_ACTION, state=m.JOB_RUNNING, tenant_id=member.tenant_id,
                    created_at=utc("2026-11-30T23:59:00"))
        db.session.add(job)
        db.session.commit()
        with pytest.raises(InvalidInput, match="still running"):
            months.close_month("2026-11", "test")
        job.state = m.JOB_SUCCEEDED
        db.session.commit()
        first = months.close_month("2026-11", "test")
        again = months.close_month("2026-11", "test")
    # A full month of a small VM: 720 × 0.015 = 10.80; 1,440 × 0.005 = 7.20; 20 × 0.04 = 0.80
    assert not first.already_closed and again.already_closed and first.total == Decimal("18.80")
    assert [(r.id, r.amount) for r in again.lines] == [(r.id, r.amount) for r in first.lines]
    assert {r.cost_centre for r in first.lines} == {member.tenant.cost_centre}
    assert (first.line_count, again.line_count, again.total) == (3, 3, Decimal("18.80"))
    # Closing is audit-logged once (not again by the idempotent second call), with what it wrote.
    closes = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "billing.close_month")))
    assert [(e.actor_label, e.target_id, e.after) for e in closes] == [
        ("test", "2026-11", {"lines": 3, "total_gbp": "18.80", "adjustments": 0})]
    with pytest.raises(InvalidInput, match="not a month"):
        months.close_month("2026-13", "test")
    # The database itself refuses to change a closed line.
    with pytest.raises(Exception, match="cannot be changed"):
        db.session.execute(text("UPDATE statement_lines SET amount = 0"))
    db.session.rollback()

    # Learned later: the server was deleted outside the portal on 28 November (Nova's time).
    servers.mark_deleted(server, "deleted outside the portal", at=utc("2026-11-28T00:00:00"))
    with frozen_at(utc("2027-01-01T00:00:10")):
        db.session.add(m.ReconcileRun())
        db.session.commit()
        december = months.close_month("2026-12", "test")
        assert months.close_month("2026-12", "test").lines == december.lines  # idempotent
    adjustments = [r for r in december.lines if r.adjusts_month == "2026-11"]
    # Three days less: 72 vCPU-h × 0.015 = 1.08; 144 GB-h × 0.005 = 0.72; 20 × 3/30 × 0.04 = 0.08
    assert sorted(r.amount for r in adjustments) == [Decimal("-1.08"), Decimal("-0.72"), Decimal("-0.08")]
    originals = {r.id: r for r in first.lines}
    assert all(r.adjusts_line_id in originals for r in adjustments)
    assert db.session.scalar(select(StatementLine.amount).where(StatementLine.id == first.lines[0].id)) == \
        first.lines[0].amount


@pytest.mark.parametrize("month", ["9999-12", "0000-05", "1999-12"])
def test_months_outside_the_billing_range_are_refused_plainly(app: Any, make_user: Any, month: str) -> None:
    """Found by the closed-lines walk: 9999-12 has no following month (a 500 everywhere)."""
    from tests.helpers import signed_in_client
    with pytest.raises(InvalidInput, match="outside the months the portal bills"):
        months.close_month(month, "test")
    finance = signed_in_client(app, make_user("finance", "platform").email)
    assert finance.get(f"/finance/?month={month}").status_code in (302, 400)
    assert finance.post(f"/finance/months/{month}/close").status_code in (302, 400)

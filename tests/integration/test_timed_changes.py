"""Office hours against the sandbox cloud, driven by the portal's clock (never the wall): the
worker's run stops a VM at 19:00 and starts it at 07:30 through the action playbook, Nova agrees,
and the month's charges bill the stopped hours for disk only, which is what the server page
says the schedule saved."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.billing import months
from cloud_portal.billing.models import UsageInterval
from cloud_portal.billing.reports import schedule_savings
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.timed import run_due_changes
from cloud_portal.timeutil import frozen_at
from tests.helpers import sign_in, utc
from tests.test_quota_increases import Inbox, smtp  # noqa: F401  (the local SMTP server fixture)

pytestmark = pytest.mark.integration


def _pence(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_office_hours_stop_and_start_a_vm_and_the_stopped_hours_pay_disk_only(
        cloud_app: Any, make_user: Any, sandbox_cloud: Any, unique_name: Any) -> None:
    member = make_user("member", "torfaen")
    client = cloud_app.test_client()
    sign_in(client, member.email)
    name = unique_name("office")
    conn = sandbox_cloud.connect()
    with frozen_at(utc("2026-11-02T08:00:00")) as move:  # Monday, GMT
        ordered = client.post("/requests/new/vm", data={"name": name, "catalog_key": "small", "image_key": "debian-12",
                                                       "data_hall": "local-government"})
        assert ordered.status_code == 302
        server = db.session.scalar(select(m.Server).where(m.Server.name == name))
        assert server is not None and server.status == "ACTIVE"
        saved = client.post(f"/servers/{server.id}/schedule", data={
            "days": ["mon", "tue", "wed", "thu", "fri"], "stop": "19:00", "start": "07:30", "timezone": "Europe/London"})
        assert saved.status_code == 302

        move(utc("2026-11-02T19:00:00"))
        report = run_due_changes(dict(cloud_app.config), grace_days=7)
        assert report.done == ["Stopped by the schedule at Mon 02 Nov 19:00."], report
        db.session.expire_all()
        assert db.session.get(m.Server, server.id).status == "SHUTOFF"
        assert conn.compute.get_server(server.openstack_id).status == "SHUTOFF"

        move(utc("2026-11-03T07:30:00"))
        assert run_due_changes(dict(cloud_app.config), grace_days=7).done == [
            "Started by the schedule at Tue 03 Nov 07:30."]
        db.session.expire_all()
        assert db.session.get(m.Server, server.id).status == "ACTIVE"
        assert conn.compute.get_server(server.openstack_id).status == "ACTIVE"

        move(utc("2026-11-03T12:00:00"))
        lines = {line.key.component: line for line in months.computed_lines("2026-11", server_id=server.id)}
        page = client.get(f"/servers/{server.id}").get_data(as_text=True)
        saving = schedule_savings(server.id)
        assert client.post(f"/servers/{server.id}/delete").status_code == 302

    # 28 hours in all: running 08:00–19:00 and 07:30–12:00 (15.5 h), stopped 12.5 h.
    assert lines["vcpu"].quantity == Decimal("15.5")  # 1 vCPU
    assert lines["ram"].quantity == Decimal("31")  # 2 GB
    assert lines["disk"].quantity.quantize(Decimal("0.0001")) == \
        (Decimal(20 * 28) / Decimal(30 * 24)).quantize(Decimal("0.0001"))  # 20 GB for all 28 hours
    vcpu, ram = lines["vcpu"].rate, lines["ram"].rate
    had_it_run = _pence(28 * vcpu) + _pence(56 * ram)
    assert saving == had_it_run - lines["vcpu"].amount - lines["ram"].amount > 0
    assert f"Saved this month so far: £{saving:,.2f}." in page
    began = [i.cause for i in db.session.scalars(select(UsageInterval).where(UsageInterval.server_id == server.id)
                                                 .order_by(UsageInterval.started_at))]
    assert began[:3] == ["created", "schedule:stop", "schedule:start"]


def test_an_expired_vm_is_stopped_then_deleted_with_its_owner_told(
        cloud_app: Any, make_user: Any, sandbox_cloud: Any, unique_name: Any, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    cloud_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_FROM="portal@cwmwl.example")
    member = make_user("member", "torfaen")
    client = cloud_app.test_client()
    sign_in(client, member.email)
    name = unique_name("lease")
    conn = sandbox_cloud.connect()
    settings = dict(cloud_app.config)
    with frozen_at(utc("2026-11-10T09:00:00")) as move:
        ordered = client.post("/requests/new/vm", data={"name": name, "catalog_key": "small", "image_key": "debian-12",
                                                       "data_hall": "local-government", "expires_on": "2026-11-20"})
        assert ordered.status_code == 302, ordered.get_data(as_text=True)
        server = db.session.scalar(select(m.Server).where(m.Server.name == name))
        assert server is not None and server.expires_at == utc("2026-11-21T00:00:00")

        move(utc("2026-11-14T09:00:00"))
        assert run_due_changes(settings, grace_days=7).done == [f"{name}: warned 7 day(s) before"]
        move(utc("2026-11-20T09:00:00"))
        assert run_due_changes(settings, grace_days=7).done == [f"{name}: warned 1 day(s) before"]
        move(utc("2026-11-21T00:00:30"))
        assert run_due_changes(settings, grace_days=7).done == [f"{name}: stopped at the end of its lease"]
        db.session.expire_all()
        assert db.session.get(m.Server, server.id).status == "SHUTOFF"
        assert conn.compute.get_server(server.openstack_id).status == "SHUTOFF"
        assert "expired: stopped, to be deleted" in client.get(f"/servers/{server.id}").get_data(as_text=True)

        move(utc("2026-11-28T00:00:30"))
        assert run_due_changes(settings, grace_days=7).done == [f"{name}: deleted after the grace period"]
        db.session.expire_all()
        assert db.session.get(m.Server, server.id).status == "DELETED"
        assert conn.compute.find_server(server.openstack_id, all_projects=True) is None
    # The owner never chose a language, so each e-mail is in Welsh and English, Welsh first (a long
    # subject is folded onto a second line in transit).
    subjects = [" ".join(str(message["Subject"]).split()) for message in smtp[0].wait(3)]
    assert [subject.split(" / ")[-1] for subject in subjects] == [
        f"{name} expires in 7 days", f"{name} expires tomorrow", f"{name} has expired and is stopped"]
    assert [subject.split(" / ")[0] for subject in subjects] == [
        f"Bydd {name} yn dod i ben ymhen 7 diwrnod", f"Bydd {name} yn dod i ben yfory",
        f"Mae {name} wedi dod i ben ac wedi'i stopio"]
    causes = [i.cause for i in db.session.scalars(select(UsageInterval).where(UsageInterval.server_id == server.id)
                                                  .order_by(UsageInterval.started_at))]
    assert causes == ["created", "expiry:stop"]

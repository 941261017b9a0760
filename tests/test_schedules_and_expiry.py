"""Office hours and leases without a cloud: the weekly arithmetic (across the clock changes), the
checks on what people type, and the worker's run driven by the clock (jobs are recorded and
queued to a queue nothing consumes; tests/integration/test_timed_changes.py runs them against
the sandbox). Expiry e-mails go to a local SMTP server."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import InvalidConfig, InvalidInput
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import timed
from cloud_portal.tenants.config_file import load_tenants_file, parse_tenants_text
from cloud_portal.tenants.service import sync_tenants
from cloud_portal.timeutil import frozen_at
from cloud_portal.weekly import ScheduleError, Weekly
from tests.conftest import TENANTS_FILE
from tests.helpers import create_user, server_seen_active, sign_in, utc
from tests.test_quota_increases import Inbox, smtp  # noqa: F401  (the local SMTP server fixture)

OFFICE = Weekly.parse(days=["mon", "tue", "wed", "thu", "fri"], stop="19:00", start="07:30")


def test_next_change_follows_the_week_and_the_clock_changes() -> None:
    # Friday 23 October 2026, British Summer Time (UTC+1): stop at 18:00 UTC.
    assert OFFICE.next_change(utc("2026-10-23T12:00:00")) == ("stop", utc("2026-10-23T18:00:00"))
    # After Friday's stop comes Monday's start; the clocks went back on Sunday 25th, so 07:30 is 07:30 UTC.
    assert OFFICE.next_change(utc("2026-10-23T18:00:00")) == ("start", utc("2026-10-26T07:30:00"))
    assert OFFICE.next_change(utc("2026-10-26T07:30:00")) == ("stop", utc("2026-10-26T19:00:00"))
    stop_only = Weekly.parse(days="sat,sun", stop="02:00", start=None, zone="Europe/Paris")
    assert stop_only.next_change(utc("2026-11-04T00:00:00")) == ("stop", utc("2026-11-07T01:00:00"))


@pytest.mark.parametrize("kwargs,message", [
    ({"days": ["mon"], "stop": "25:00", "start": None}, "'25:00' is not a time of day; write it as HH:MM"),
    ({"days": ["mon", "funday"], "stop": "19:00", "start": None}, "fun is not a day"),
    ({"days": [], "stop": "19:00", "start": None}, "Choose at least one day"),
    ({"days": ["mon"], "stop": "", "start": ""}, "Give a time to stop, a time to start, or both"),
    ({"days": ["mon"], "stop": "08:00", "start": "08:00"}, "the same"),
    ({"days": ["mon"], "stop": "19:00", "start": None, "zone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone"),
])
def test_schedules_that_cannot_be_kept_are_refused_plainly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Weekly.parse(**kwargs)


def test_tenants_file_checks_office_hours_and_leases() -> None:
    original = TENANTS_FILE.read_text()
    with pytest.raises(InvalidConfig) as caught:
        parse_tenants_text(original.replace('stop: "19:00", start: "07:30"', 'stop: "7pm", start: "07:30"'),
                           "tenants.yaml")
    assert "tenants[3].office_hours: The stop time '7pm' is not a time of day" in str(caught.value)
    with pytest.raises(InvalidConfig) as caught:
        parse_tenants_text(original.replace("required_for: [xlarge]", "required_for: [huge]"), "tenants.yaml")
    assert "tenants[3].lease.required_for[0]: 'huge' is not a size or desktop in the catalog" in str(caught.value)


@pytest.fixture
def timed_app(make_app: Callable[..., Any], smtp: tuple[Inbox, int]) -> Iterator[Any]:  # noqa: F811
    """Jobs go to a queue nothing consumes (no cloud); e-mail to the local SMTP server."""
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1],
                   SMTP_FROM="portal@cwmwl.example")
    with app.app_context():
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        yield app


def _run(app: Any, when: str) -> timed.TimedReport:
    with frozen_at(utc(when)):
        return timed.run_due_changes(dict(app.config), grace_days=7)


def _jobs(server_id: int) -> list[tuple[str | None, str | None]]:
    db.session.expire_all()
    return [(j.action, j.origin) for j in db.session.scalars(
        select(m.Job).where(m.Job.server_id == server_id).order_by(m.Job.created_at))]


def test_the_worker_carries_out_office_hours_and_puts_off_a_busy_server(timed_app: Any) -> None:
    member = create_user("member", "torfaen")
    server = server_seen_active(member, "office", utc("2026-11-02T08:00:00"))  # Monday
    client = timed_app.test_client()
    sign_in(client, member.email)
    with frozen_at(utc("2026-11-02T09:00:00")):
        saved = client.post(f"/servers/{server.id}/schedule", data={
            "days": ["mon", "tue", "wed", "thu", "fri"], "stop": "19:00", "start": "07:30", "timezone": "Europe/London"})
        assert saved.status_code == 302
        page = client.get(f"/servers/{server.id}").get_data(as_text=True)
    assert "Next: stop at Mon 02 Nov 19:00." in page
    bad = client.post(f"/servers/{server.id}/schedule", data={"days": ["mon"], "stop": "7pm"}, follow_redirects=True)
    assert "The stop time &#39;7pm&#39; is not a time of day" in bad.get_data(as_text=True)
    too_long = client.post(f"/servers/{server.id}/schedule", data={"days": ["mon"], "stop": "19:00:00"},
                           follow_redirects=True)
    assert too_long.status_code == 200 and "Write each time as HH:MM, e.g. 07:30." in too_long.get_data(as_text=True)

    assert _run(timed_app, "2026-11-02T18:59:00").done == []  # not yet
    report = _run(timed_app, "2026-11-02T19:00:20")
    assert report.done == ["Stopped by the schedule at Mon 02 Nov 19:00."]
    assert _jobs(server.id)[-1] == ("stop", "schedule")
    row = db.session.get(m.ServerSchedule, server.id)
    assert (row.next_action, row.next_at) == ("start", utc("2026-11-03T07:30:00"))
    assert _run(timed_app, "2026-11-02T19:01:20").done == []  # done once, not every minute

    # Tuesday 07:30 the stop job is still running (the worker was slow): put off, then done.
    busy = _run(timed_app, "2026-11-03T07:30:10")
    assert "put off: the server is busy (stop); trying again at Tue 03 Nov 07:35" in busy.done[0]
    server = db.session.get(m.Server, server.id)
    from cloud_portal.provisioning import leases
    from cloud_portal.provisioning import servers as server_state
    server_state.transition(server, cause="schedule:stop", status=m.SERVER_SHUTOFF, at=utc("2026-11-02T19:02:00"))
    server.task = None
    leases.finish(leases.latest_job(server_id=server.id), m.JOB_SUCCEEDED)
    db.session.commit()
    assert _run(timed_app, "2026-11-03T07:35:30").done == ["Started by the schedule at Tue 03 Nov 07:35."]
    assert _jobs(server.id)[-1] == ("start", "schedule")
    actions = [e.action for e in db.session.scalars(select(AuditEvent).where(
        AuditEvent.target_id == str(server.id), AuditEvent.action.like("schedule.%")).order_by(AuditEvent.id))]
    assert actions == ["schedule.set", "schedule.stop", "schedule.busy", "schedule.start"]


def test_new_vms_get_the_tenant_default_and_leases_follow_its_rules(timed_app: Any) -> None:
    officer = create_user("member", "gwent-police")
    vm = server_seen_active(officer, "pc-web", utc("2026-11-02T08:00:00"), hall="police")
    row = db.session.get(m.ServerSchedule, vm.id)
    assert (row.days, row.stop_at, row.start_at, row.timezone) == (
        ["mon", "tue", "wed", "thu", "fri"], "19:00", "07:30", "Europe/London")
    from cloud_portal.provisioning import requests as orders
    tenant = officer.tenant
    today = date(2026, 11, 2)
    with frozen_at(utc("2026-11-02T10:00:00")):
        with pytest.raises(InvalidInput, match="asks for an expiry date for this size"):
            timed.check_lease(tenant, "xlarge", None)
        with pytest.raises(InvalidInput, match="allows at most 90 days; the latest expiry date is 31 January 2027"):
            timed.check_lease(tenant, "small", today + timedelta(days=91))
        with pytest.raises(InvalidInput, match="has passed"):
            timed.check_lease(tenant, "small", today - timedelta(days=1))
        request = orders.submit_request(officer, kind="vm", catalog_key="xlarge", image_key="debian-12",
                                        data_hall="police", name="big-one", expires_on=date(2026, 11, 30))
    # The lease ends as 30 November does in the UK (midnight GMT).
    assert request.expires_at == utc("2026-12-01T00:00:00")


def test_expiry_warns_stops_and_deletes_and_an_extension_starts_again(timed_app: Any, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    member = create_user("member", "torfaen", email="leaseholder@torfaen.example")
    server = server_seen_active(member, "short", utc("2026-11-02T08:00:00"))
    server.expires_at = timed.lease_end(date(2026, 11, 20))  # 21 Nov 00:00 UK = 00:00 UTC
    db.session.commit()
    assert _run(timed_app, "2026-11-13T00:00:00").done == []  # 8 days left
    assert _run(timed_app, "2026-11-14T01:00:00").done == ["short: warned 7 day(s) before"]
    assert _run(timed_app, "2026-11-14T02:00:00").done == []  # once
    assert _run(timed_app, "2026-11-20T01:00:00").done == ["short: warned 1 day(s) before"]
    assert _run(timed_app, "2026-11-21T00:00:30").done == ["short: stopped at the end of its lease"]
    assert _jobs(server.id)[-1] == ("stop", "expiry")
    messages = smtp[0].wait(3)
    # The owner never chose a language, so each e-mail is in Welsh and English, Welsh first
    # (a long subject is folded onto a second line in transit).
    assert [" ".join(str(msg["Subject"]).split()) for msg in messages] == [
        "Bydd short yn dod i ben ymhen 7 diwrnod / short expires in 7 days",
        "Bydd short yn dod i ben yfory / short expires tomorrow",
        "Mae short wedi dod i ben ac wedi'i stopio / short has expired and is stopped"]
    assert all(msg["To"] == member.email for msg in messages)
    assert "deleted on 28 November 2026 00:00" in messages[2].get_payload()

    # The stop finished; the owner extends it (within 90 days is fine: torfaen has no limit)...
    server = db.session.get(m.Server, server.id)
    from cloud_portal.provisioning import leases
    from cloud_portal.provisioning import servers as server_state
    server_state.transition(server, cause="expiry:stop", status=m.SERVER_SHUTOFF, at=utc("2026-11-21T00:01:00"))
    server.task = None
    leases.finish(leases.latest_job(server_id=server.id), m.JOB_SUCCEEDED)
    db.session.commit()
    client = timed_app.test_client()
    sign_in(client, member.email)
    with frozen_at(utc("2026-11-22T09:00:00")):
        assert client.post(f"/servers/{server.id}/extend", data={"until": "2026-11-25"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(m.Server, server.id).expiry_stage is None
    assert _run(timed_app, "2026-11-28T00:00:30").done[0] == "short: stopped at the end of its lease"
    # ...and once the grace period after the new end is over, it is deleted.
    assert _run(timed_app, "2026-12-02T00:00:00").done == []
    assert _run(timed_app, "2026-12-03T00:00:30").done == ["short: deleted after the grace period"]
    assert _jobs(server.id)[-1] == ("delete", "expiry")
    events = [e.action for e in db.session.scalars(select(AuditEvent).where(
        AuditEvent.target_id == str(server.id), AuditEvent.action.like("server.%")).order_by(AuditEvent.id))]
    assert events.count("server.expiry_warning") == 2 and "server.extend" in events
    assert events[-2:] == ["server.expiry_delete", "server.delete"]

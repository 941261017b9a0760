"""Changes the portal makes on its own, on time: office-hours schedules and leases that end.

Both go through the action job (the same playbook a person's stop, start or delete uses), with
the job's ``origin`` saying who asked, so the ledger records e.g. "schedule:stop" and the audit
log has each step. The worker runs :func:`run_due_changes` every minute; one worker at a time
(a ``worker_locks`` lease), and each change is recorded before its job is queued, so a crash
between the two leaves a queued job that reconciliation enqueues again, never a second job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, NotPermitted
from cloud_portal.extensions import db
from cloud_portal.i18n import _, current_language, for_recipient, long_date
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.reconcile import new_lock_holder, release_worker_lock, take_worker_lock
from cloud_portal.provisioning.servers import load_server, on_created, queue_action
from cloud_portal.timeutil import utcnow
from cloud_portal.weekly import ScheduleError, Weekly

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User
    from cloud_portal.tenants.models import Tenant

log = logging.getLogger(__name__)

#: A busy server is tried again after this, up to this many times, then that change is missed.
RETRY_AFTER = timedelta(minutes=5)
MAX_SCHEDULE_RETRIES = 12
#: At most this many changes a run (the next run, a minute later, takes the rest).
BATCH = 200
TIMED_LOCK = "timed-changes"
TIMED_LEASE = timedelta(minutes=5)
#: A lease ends as the chosen day does in UK time (the zone the pages and e-mails name).
LEASE_ZONE = ZoneInfo("Europe/London")
#: E-mail warnings go this many days before a lease ends (expiry_stage "warned_7", "warned_1").
WARN_DAYS = (7, 1)


# Schedules ---------------------------------------------------------------------------------

def weekly_of(row: m.ServerSchedule) -> Weekly:
    return Weekly.parse(days=row.days, stop=row.stop_at, start=row.start_at, zone=row.timezone)


def schedule_for(server_id: int) -> m.ServerSchedule | None:
    return db.session.get(m.ServerSchedule, server_id)


def _write_schedule(server: m.Server, weekly: Weekly, now: datetime) -> m.ServerSchedule:
    if server.id is None:
        db.session.flush()
    row = db.session.get(m.ServerSchedule, server.id)
    if row is None:
        row = m.ServerSchedule(server_id=server.id, attempts=0)
        db.session.add(row)
    row.days, row.timezone = list(weekly.days), weekly.zone
    row.stop_at = weekly.stop.strftime("%H:%M") if weekly.stop else None
    row.start_at = weekly.start.strftime("%H:%M") if weekly.start else None
    _advance(row, weekly, now)
    return row


def set_schedule(user: User, server_id: int, *, days: list[str] | str | None, stop: str | None,
                 start: str | None, timezone: str | None = None) -> m.ServerSchedule:
    """Give a server office hours (or change them); the caller commits. Owners, their tenant
    admins and platform admins. InvalidInput says what to correct."""
    server = load_server(user, server_id)
    if not server.can_operate(user):
        raise NotPermitted(_("Only the server's owner and their administrators can set its schedule."))
    try:
        weekly = Weekly.parse(days=days, stop=stop, start=start, zone=timezone)
    except ScheduleError as exc:
        raise InvalidInput(str(exc)) from None
    row = _write_schedule(server, weekly, utcnow())
    audit.record(user, "schedule.set", "server", server.id, tenant_id=server.tenant_id, after=weekly.as_dict())
    return row


def clear_schedule(user: User, server_id: int) -> None:
    """Remove a server's office hours; the caller commits."""
    server = load_server(user, server_id)
    if not server.can_operate(user):
        raise NotPermitted(_("Only the server's owner and their administrators can change its schedule."))
    row = db.session.get(m.ServerSchedule, server.id)
    if row is not None:
        db.session.delete(row)
        audit.record(user, "schedule.clear", "server", server.id, tenant_id=server.tenant_id)


def apply_tenant_default(server: m.Server, tenant: Tenant) -> None:
    """A new VM gets its tenant's default office hours, if the tenant has them (tenants.yaml)."""
    if server.kind != m.KIND_VM or not tenant.office_hours:
        return
    hours = tenant.office_hours
    weekly = Weekly.parse(days=hours.get("days"), stop=hours.get("stop"), start=hours.get("start"),
                          zone=hours.get("timezone"))
    _write_schedule(server, weekly, utcnow())
    audit.record(None, "schedule.set", "server", server.id, tenant_id=server.tenant_id,
                 after={**weekly.as_dict(), "from": "the organisation's default"})


on_created(lambda server: apply_tenant_default(server, server.tenant))


def _advance(row: m.ServerSchedule, weekly: Weekly, after: datetime) -> None:
    upcoming = weekly.next_change(after)
    row.next_action, row.next_at = upcoming if upcoming else (None, None)
    row.attempts = 0


def local_time(moment: datetime, zone: str) -> str:
    """A moment as people of ``zone`` read it, e.g. "Mon 07 Dec 19:00"."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M")


def _run_schedule(row: m.ServerSchedule, now: datetime) -> str:
    """Carry out (or put off, or pass over) one due change; returns what happened."""
    server = row.server
    weekly = weekly_of(row)
    action = row.next_action or "stop"
    due = row.next_at or now
    if server.status == m.SERVER_DELETED:
        db.session.delete(row)
        return f"server {server.id} is deleted; its schedule is removed"
    wanted = m.SERVER_SHUTOFF if action == "stop" else m.SERVER_ACTIVE
    if server.task is not None:
        row.attempts += 1
        if row.attempts > MAX_SCHEDULE_RETRIES:
            row.last_note = (f"The {action} due {local_time(due, row.timezone)} did not happen: the server stayed busy "
                             f"({server.task}). The schedule carries on with the next change.")
            audit.record(None, "schedule.missed", "server", server.id, tenant_id=server.tenant_id,
                         after={"action": action, "busy": server.task})
            _advance(row, weekly, now)
        else:
            row.next_at = now + RETRY_AFTER
            row.last_note = (f"The {action} due {local_time(due, row.timezone)} was put off: the server is busy "
                             f"({server.task}); trying again at {local_time(row.next_at, row.timezone)}.")
            audit.record(None, "schedule.busy", "server", server.id, tenant_id=server.tenant_id,
                         after={"action": action, "busy": server.task, "attempt": row.attempts})
        return row.last_note
    if server.status == wanted:
        row.last_note = f"Already {'stopped' if action == 'stop' else 'running'} at {local_time(due, row.timezone)}."
        _advance(row, weekly, max(due, now))
        return row.last_note
    if action not in server.allowed_actions():
        row.last_note = (f"Could not {action} at {local_time(due, row.timezone)}: the server is "
                         f"{server.status.lower()}.")
        audit.record(None, "schedule.skipped", "server", server.id, tenant_id=server.tenant_id,
                     after={"action": action, "status": server.status})
        _advance(row, weekly, max(due, now))
        return row.last_note
    queue_action(server, action, actor=None, origin="schedule")
    done = "Stopped" if action == "stop" else "Started"
    row.last_note = f"{done} by the schedule at {local_time(now, row.timezone)}."
    audit.record(None, f"schedule.{action}", "server", server.id, tenant_id=server.tenant_id,
                 after={"due": due.isoformat()})
    _advance(row, weekly, max(due, now))
    return row.last_note


# Leases ------------------------------------------------------------------------------------

def lease_end(day: date) -> datetime:
    """A lease "until 31 December" ends as that day does (midnight after it, UK time)."""
    return datetime.combine(day + timedelta(days=1), time(), LEASE_ZONE).astimezone(UTC)


def check_lease(tenant: Tenant, catalog_key: str, until: date | None, *, today: date | None = None) -> datetime | None:
    """The end of a lease asked for (None: no end), checked against the tenant's rules."""
    today = today or utcnow().astimezone(LEASE_ZONE).date()
    if until is None:
        if catalog_key in (tenant.lease_required_for or []):
            if tenant.lease_max_days:
                raise InvalidInput(_("%(tenant)s asks for an expiry date for this size; choose the last day it is "
                                     "needed (at most %(days)s days).", tenant=tenant.display_name(current_language()),
                                     days=tenant.lease_max_days))
            raise InvalidInput(_("%(tenant)s asks for an expiry date for this size; choose the last day it is "
                                 "needed.", tenant=tenant.display_name(current_language())))
        return None
    if until < today:
        raise InvalidInput(_("The expiry date %(day)s has passed; choose a later day.", day=long_date(until)))
    if tenant.lease_max_days and until > today + timedelta(days=tenant.lease_max_days):
        latest = today + timedelta(days=tenant.lease_max_days)
        raise InvalidInput(_("%(tenant)s allows at most %(days)s days; the latest expiry date is %(latest)s.",
                             tenant=tenant.display_name(current_language()), days=tenant.lease_max_days,
                             latest=long_date(latest)))
    return lease_end(until)


def extend_lease(user: User, server_id: int, until: date) -> m.Server:
    """Move a server's expiry to the end of ``until`` (within its tenant's longest lease, counted
    from today); the warnings start again. Owner, their tenant admins, platform admins; the
    caller commits. A server already stopped by its expiry stays stopped until someone starts it."""
    server = load_server(user, server_id)
    if not server.can_operate(user):
        raise NotPermitted(_("Only the server's owner and their administrators can extend it."))
    catalog_key = server.request.catalog_key if server.request else ""
    new_end = check_lease(server.tenant, catalog_key, until)
    before = server.expires_at
    server.expires_at, server.expiry_stage = new_end, None
    audit.record(user, "server.extend", "server", server.id, tenant_id=server.tenant_id,
                 before={"expires_at": before.isoformat() if before else None},
                 after={"expires_at": new_end.isoformat() if new_end else None})
    return server


def _mail(settings: dict[str, Any], server: m.Server, compose: Callable[[], tuple[str, str]]) -> None:
    """E-mail the server's owner what ``compose`` writes, in their language (see for_recipient)."""
    from cloud_portal.adapters.mail import MailError, send_mail
    subject, text = for_recipient(server.owner.language, compose)
    try:
        send_mail(settings, server.owner.email, subject, text)
    except MailError as exc:  # the portal shows the same; a lost e-mail must not stop the change
        log.warning("expiry e-mail for server %s failed: %s", server.id, exc)


def _run_lease(server: m.Server, now: datetime, settings: dict[str, Any], grace: timedelta) -> str | None:
    """Warn, stop or delete one server whose lease is ending or over; returns what happened."""
    assert server.expires_at is not None
    ends, name = server.expires_at, server.name

    def ends_text() -> str:  # in the language of the e-mail being written
        return f"{long_date(ends.astimezone(LEASE_ZONE))} {ends.astimezone(LEASE_ZONE):%H:%M}"
    if ends > now:
        left = ends - now
        if left <= timedelta(days=1) and server.expiry_stage != "warned_1":
            days, stage = 1, "warned_1"
        elif left <= timedelta(days=7) and server.expiry_stage is None:
            days, stage = 7, "warned_7"
        else:
            return None
        server.expiry_stage = stage
        audit.record(None, "server.expiry_warning", "server", server.id, tenant_id=server.tenant_id,
                     after={"days": days})

        def warning() -> tuple[str, str]:
            subject = (_("%(name)s expires tomorrow", name=name) if days == 1
                       else _("%(name)s expires in %(days)s days", name=name, days=days))
            return subject, _("Your server %(name)s expires on %(ends)s (UK time). It will then be stopped, and "
                              "deleted %(grace)s days later.\n\nIf you still need it, extend it on its page in "
                              "the portal.\n", name=name, ends=ends_text(), grace=grace.days)

        _mail(settings, server, warning)
        return f"{name}: warned {days} day(s) before"
    if server.task is not None:
        return None  # busy: the next run tries again
    deleting_at = ends + grace
    if server.expiry_stage != "stopped":
        server.expiry_stage = "stopped"
        audit.record(None, "server.expired", "server", server.id, tenant_id=server.tenant_id,
                     after={"delete_after": deleting_at.isoformat()})
        if "stop" in server.allowed_actions():
            queue_action(server, "stop", actor=None, origin="expiry")

        def stopped() -> tuple[str, str]:
            deleting = deleting_at.astimezone(LEASE_ZONE)
            return (_("%(name)s has expired and is stopped", name=name),
                    _("Your server %(name)s expired on %(ends)s and has been stopped. It will be deleted on "
                      "%(deleting)s unless it is extended first.\n", name=name, ends=ends_text(),
                      deleting=f"{long_date(deleting)} {deleting:%H:%M}"))

        _mail(settings, server, stopped)
        return f"{name}: stopped at the end of its lease"
    if now >= deleting_at and "delete" in server.allowed_actions():
        audit.record(None, "server.expiry_delete", "server", server.id, tenant_id=server.tenant_id)
        queue_action(server, "delete", actor=None, origin="expiry")
        return f"{name}: deleted after the grace period"
    return None


# The worker's run --------------------------------------------------------------------------

@dataclass
class TimedReport:
    done: list[str] = field(default_factory=list)
    skipped_because: str | None = None


def run_due_changes(settings: dict[str, Any], *, grace_days: int, now: datetime | None = None) -> TimedReport:
    """Carry out every schedule change and lease step that is due; commits each one (queueing
    its job as it commits). One worker at a time."""
    from cloud_portal.unit_of_work import commit

    report = TimedReport()
    holder = new_lock_holder()
    current = take_worker_lock(TIMED_LOCK, holder, TIMED_LEASE)
    if current != holder:
        report.skipped_because = f"another worker ({current}) is carrying out scheduled changes"
        return report
    try:
        now = now or utcnow()
        due = list(db.session.scalars(select(m.ServerSchedule.server_id).where(m.ServerSchedule.next_at <= now)
                                      .order_by(m.ServerSchedule.next_at).limit(BATCH)))
        for server_id in due:
            row = db.session.get(m.ServerSchedule, server_id)
            if row is not None and row.next_at is not None and row.next_at <= now:
                report.done.append(_run_schedule(row, now))
                commit()
        grace = timedelta(days=grace_days)
        soon = now + timedelta(days=max(WARN_DAYS))
        ending = list(db.session.scalars(select(m.Server.id).where(
            m.Server.expires_at <= soon, m.Server.status != m.SERVER_DELETED)
            .order_by(m.Server.expires_at).limit(BATCH)))
        for server_id in ending:
            server = db.session.get(m.Server, server_id)
            if server is not None and server.expires_at is not None:
                outcome = _run_lease(server, now, settings, grace)
                if outcome:
                    report.done.append(outcome)
                commit()
    finally:
        release_worker_lock(TIMED_LOCK, holder)
    return report

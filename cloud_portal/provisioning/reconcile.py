"""Reconciliation: compare the portal with OpenStack and put the portal right."""
from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.adapters.openstack import REQUEST_ID_KEY, CloudError, ServerInfo, request_tag
from cloud_portal.audit import service as audit
from cloud_portal.extensions import db
from cloud_portal.i18n import N_
from cloud_portal.provisioning import lifecycle
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import servers as server_state
from cloud_portal.provisioning.findings import record_finding
from cloud_portal.provisioning.leftovers import release_request_quota, remove_half_made
from cloud_portal.provisioning.plain_words import plain_words
from cloud_portal.tenants.cloud_sync import project_id, project_name
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)

#: Nova statuses reconciliation copies into the portal (others are transient: BUILD, RESIZE, ...).
SETTLED_STATUSES = ("ACTIVE", "SHUTOFF", "ERROR")
GIVEN_UP = N_("The job stopped without finishing (its worker stopped or hung) and was given up.")


@dataclass
class ReconcileReport:
    updated: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    resumed_jobs: list[str] = field(default_factory=list)
    failed_jobs: list[str] = field(default_factory=list)
    requeued_jobs: list[str] = field(default_factory=list)
    #: Set when another worker was reconciling: this run did nothing.
    skipped_because: str | None = None


#: The reconciliation lease: one worker reconciles at a time; renewed after each tenant, so it
#: only runs out when its holder died or hung.
RECONCILE_LOCK = "reconcile"
RECONCILE_LEASE = timedelta(minutes=5)

#: A job still queued this long after it was recorded (or last claimed) lost its queue message.
LOST_AFTER = timedelta(minutes=5)


def reconcile(ctx: CloudContext, *, resume: Callable[[m.Job], None],
              lost_after: timedelta = LOST_AFTER) -> ReconcileReport:
    """Compare the portal with OpenStack and put the portal right.

    - a server deleted outside the portal is marked deleted (its quota released);
    - a server stopped or started outside is updated;
    - a server in a tenant's project the portal does not know is flagged for admins;
    - a job whose lease ran out (worker died or hung) is resumed (``resume(job)``) once, or
      failed with a reason after two attempts;
    - a job still queued after ``lost_after`` (its queue message was lost: the queue was down
      between the commit and the enqueue, or restarted) is enqueued again.
    """
    report = ReconcileReport()
    # Every worker runs the periodic task; the one that takes the lease does the work, so two
    # machines never resume the same job or release the same quota side by side.
    holder = new_lock_holder()
    current = take_worker_lock(RECONCILE_LOCK, holder, RECONCILE_LEASE)
    if current != holder:
        report.skipped_because = f"another worker ({current}) is reconciling"
        log.info("reconciliation skipped: %s", report.skipped_because)
        return report
    try:
        _recover_jobs(ctx, resume, report)
        report.requeued_jobs += requeue_lost_jobs(resume, lost_after)
        tenants = list(db.session.scalars(select(Tenant).where(Tenant.is_platform.is_(False),
                                                               Tenant.active.is_(True))))
        for tenant in tenants:
            project = project_id(ctx, tenant)
            if project is None:
                continue
            live = {s.id: s for s in ctx.cloud.list_servers(project)}
            _update_known_servers(ctx, project, tenant, live, report)
            _look_at_unknown_servers(ctx, tenant, live, report)
            db.session.commit()
            take_worker_lock(RECONCILE_LOCK, holder, RECONCILE_LEASE)  # renew
        db.session.add(m.ReconcileRun(finished_at=utcnow()))  # month close waits for one after the month
        db.session.commit()
    finally:
        db.session.rollback()
        release_worker_lock(RECONCILE_LOCK, holder)
    return report


def new_lock_holder() -> str:
    """A name for this run of this worker in a ``worker_locks`` lease: host, process and a random
    part, so two runs in one process are two holders."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_worker_lock(name: str, holder: str, lease: timedelta) -> str:
    """Take (or renew) the named lease for ``holder`` if it is free, expired or already ours;
    commits. Returns who holds it now (``holder`` when taken)."""
    now = utcnow()
    if db.session.get(m.WorkerLock, name) is None:
        try:
            with db.session.begin_nested():
                db.session.add(m.WorkerLock(name=name, holder=holder, expires_at=now + lease))
            db.session.commit()
            return holder
        except IntegrityError:
            pass  # another worker made the row first; the UPDATE below decides
    taken = db.session.execute(
        update(m.WorkerLock)
        .where(m.WorkerLock.name == name, or_(m.WorkerLock.expires_at <= now, m.WorkerLock.holder == holder))
        .values(holder=holder, expires_at=now + lease).execution_options(synchronize_session=False))
    db.session.commit()
    if taken.rowcount:  # type: ignore[attr-defined]
        return holder
    return db.session.scalar(select(m.WorkerLock.holder).where(m.WorkerLock.name == name)) or "?"


def release_worker_lock(name: str, holder: str) -> None:
    """Give the lease back (only if ``holder`` still has it); commits."""
    db.session.execute(update(m.WorkerLock).where(m.WorkerLock.name == name, m.WorkerLock.holder == holder)
                       .values(expires_at=utcnow()).execution_options(synchronize_session=False))
    db.session.commit()


def requeue_lost_jobs(resume: Callable[[m.Job], None], lost_after: timedelta = LOST_AFTER) -> list[str]:
    """Enqueue again every job the jobs table says is queued but nobody has touched for
    ``lost_after``: the table, not the queue, is the record. A duplicate message is harmless
    (claiming is one conditional UPDATE: the second claim finds the job taken or done)."""
    since = utcnow() - lost_after
    lost = list(db.session.scalars(select(m.Job).where(
        m.Job.state == m.JOB_QUEUED, func.coalesce(m.Job.started_at, m.Job.created_at) < since)))
    for job in lost:
        log.warning("job %s (%s) was queued since %s and never ran: enqueued again", job.id, job.kind,
                    job.started_at or job.created_at)
        resume(job)
    return [job.id for job in lost]


def _recover_jobs(ctx: CloudContext, resume: Callable[[m.Job], None], report: ReconcileReport) -> None:
    now = utcnow()
    for job in db.session.scalars(select(m.Job).where(m.Job.state == m.JOB_RUNNING, m.Job.deadline_at < now)):
        if job.attempts < 2:
            # Conditional: a worker that renewed its lease after the SELECT keeps its job.
            requeued = db.session.execute(
                update(m.Job).where(m.Job.id == job.id, m.Job.state == m.JOB_RUNNING, m.Job.deadline_at < now)
                .values(state=m.JOB_QUEUED).execution_options(synchronize_session="fetch"))
            db.session.commit()
            if requeued.rowcount:  # type: ignore[attr-defined]
                resume(job)
                report.resumed_jobs.append(job.id)
            continue
        if job.kind == m.JOB_PROVISION and job.request_id is not None:
            request = db.session.get(m.ServerRequest, job.request_id)
            if request is not None and request.state == m.PROVISIONING:
                lifecycle.advance(request, lifecycle.FAIL)
                request.reason = GIVEN_UP
                release_request_quota(request, "job timed out", None)
                remove_half_made(request, ctx)
        elif job.server_id is not None:
            server = db.session.get(m.Server, job.server_id)
            if server is not None:
                server.task, server.problem = None, GIVEN_UP
        job.state, job.error, job.finished_at = m.JOB_FAILED, GIVEN_UP, now
        record_finding(m.FINDING_JOB_TIMED_OUT, job.id, GIVEN_UP, job.tenant_id)
        db.session.commit()
        report.failed_jobs.append(job.id)


def _update_known_servers(ctx: CloudContext, project: str, tenant: Tenant, live: dict[str, ServerInfo],
                          report: ReconcileReport) -> None:
    now = utcnow()
    known = db.session.scalars(select(m.Server).where(
        m.Server.tenant_id == tenant.id, m.Server.status != m.SERVER_DELETED, m.Server.openstack_id.is_not(None)))
    for server in list(known):
        info = live.get(server.openstack_id or "")
        if info is None:
            if server.task == "delete":
                continue  # the delete job will record it
            # Billing ends when Nova deleted it (its terminated_at), not when we noticed.
            server_state.mark_deleted(server, "deleted outside the portal",
                                      at=_terminated_at(ctx, project, server, now))
            record_finding(m.FINDING_DELETED_OUTSIDE, server.openstack_id or "",
                           f"{server.name} was deleted outside the portal", tenant.id)
            report.updated.append(f"{server.name}: deleted outside the portal")
            continue
        if info.status != server.status and server.task is None and info.status in SETTLED_STATUSES:
            report.updated.append(f"{server.name}: {server.status} → {info.status}")
            audit.record(None, "server.reconcile", "server", server.openstack_id, tenant_id=tenant.id,
                         before={"status": server.status}, after={"status": info.status})
            server_state.transition(server, cause="found by reconciliation", status=info.status)
            if info.status == "ERROR":
                server.problem = plain_words(info.fault)
        server.last_seen_at = now


def _terminated_at(ctx: CloudContext, project: str, server: m.Server, now: datetime) -> datetime:
    """When Nova deleted ``server`` (from its usage report), or now when Nova no longer says."""
    try:
        # From a little before our record of it: Nova's times are whole seconds and a server made
        # and deleted within moments could otherwise fall outside the report.
        since = server.created_at - timedelta(hours=1)
        usage = ctx.cloud.server_usage(project, since, now).get(server.openstack_id or "")
    except CloudError as exc:
        log.warning("no deletion time from Nova for %s: %s", server.openstack_id, exc)
        usage = None
    ended = usage.ended_at if usage is not None else None
    return ended if ended is not None and ended <= now else now


def _look_at_unknown_servers(ctx: CloudContext, tenant: Tenant, live: dict[str, ServerInfo],
                             report: ReconcileReport) -> None:
    known = set(db.session.scalars(select(m.Server.openstack_id).where(
        m.Server.tenant_id == tenant.id, m.Server.status != m.SERVER_DELETED, m.Server.openstack_id.is_not(None))))
    in_flight = {request_tag(r) for r in db.session.scalars(select(m.ServerRequest.uid).where(
        m.ServerRequest.tenant_id == tenant.id, m.ServerRequest.state.in_(m.OPEN_REQUEST_STATES)))}
    for openstack_id, info in live.items():
        if openstack_id in known or info.metadata.get(REQUEST_ID_KEY) in in_flight:
            continue
        tag = info.metadata.get(REQUEST_ID_KEY) or ""
        request = db.session.scalar(select(m.ServerRequest).where(
            m.ServerRequest.uid == tag.removeprefix("request-"))) if tag else None
        if request is not None and request.state in (m.FAILED, m.CANCELLED):
            # Left behind by a failed request when the cloud was down: remove it now.
            remove_half_made(request, ctx)
            report.updated.append(f"{info.name}: leftover of failed request {request.id} removed")
            continue
        if record_finding(m.FINDING_UNKNOWN_SERVER, openstack_id, f"{info.name} ({info.status}) is in project "
                          f"{project_name(tenant)} but not in the portal", tenant.id):
            report.findings.append(f"{tenant.slug}: unknown server {info.name} ({openstack_id})")

"""Jobs as the domain sees them: recording, enqueueing after commit, claiming with a lease,
progress steps and finishing. The provision and action jobs (provision.py, actions.py) build
on these; the queue tasks in ``cloud_portal.jobs`` only call them.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from cloud_portal.adapters.ansible import ExtraValue, PlaybookEvent, PlaybookResult
from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.errors import TenantBusy
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.timeutil import utcnow
from cloud_portal.unit_of_work import after_commit

log = logging.getLogger(__name__)

#: Set by the jobs layer at app creation: puts a recorded job on the queue.
_enqueuer: Callable[[m.Job], None] | None = None


def register_enqueuer(enqueue: Callable[[m.Job], None]) -> None:
    """The jobs layer says how a committed job reaches the queue (called once, at import)."""
    global _enqueuer
    _enqueuer = enqueue


def enqueue(job: m.Job) -> None:
    """Put ``job`` on the queue once the caller's transaction commits (unit_of_work.commit)."""
    if _enqueuer is None:
        raise RuntimeError("no job queue registered; create_app registers cloud_portal.jobs")
    enqueuer = _enqueuer
    after_commit(lambda: enqueuer(job))


def new_job(kind: str, *, tenant_id: int, request_id: int | None = None, server_id: int | None = None,
            action: str | None = None, job_id: str | None = None) -> m.Job:
    """Record a queued job in the session (not yet enqueued; see :func:`enqueue`)."""
    job = m.Job(id=job_id or str(uuid.uuid4()), kind=kind, action=action, tenant_id=tenant_id, request_id=request_id,
                server_id=server_id, state=m.JOB_QUEUED)
    db.session.add(job)
    return job


def latest_job(*, request_id: int | None = None, server_id: int | None = None) -> m.Job | None:
    """The newest job of a request or a server (what its page shows progress of)."""
    query = select(m.Job).order_by(m.Job.created_at.desc())
    query = query.where(m.Job.request_id == request_id) if request_id is not None \
        else query.where(m.Job.server_id == server_id)
    return db.session.scalar(query)


def step(job: m.Job, task: str, status: str, message: str | None = None, host: str = "portal") -> None:
    """Append a progress row and commit, so the requester's page shows it at once."""
    seq = (db.session.scalar(select(func.max(m.JobStep.seq)).where(m.JobStep.job_id == job.id)) or 0) + 1
    db.session.add(m.JobStep(job_id=job.id, seq=seq, task=task[:200], host=host[:100], status=status,
                             message=message))
    db.session.commit()


def claim(job: m.Job, ctx: CloudContext, tenant_limit: int) -> bool:
    """Claim the job (queued or lease-expired → running). False if another worker holds it.

    Raises TenantBusy when the tenant already has ``tenant_limit`` jobs running.
    """
    now = utcnow()
    running = db.session.scalar(select(func.count()).select_from(m.Job).where(
        m.Job.tenant_id == job.tenant_id, m.Job.state == m.JOB_RUNNING, m.Job.id != job.id,
        m.Job.deadline_at > now)) or 0
    if running >= tenant_limit:
        raise TenantBusy(f"tenant {job.tenant_id} has {running} jobs running")
    claimed = db.session.execute(
        update(m.Job).where(m.Job.id == job.id, (m.Job.state == m.JOB_QUEUED)
                            | ((m.Job.state == m.JOB_RUNNING) & (m.Job.deadline_at < now)))
        .values(state=m.JOB_RUNNING, attempts=m.Job.attempts + 1, started_at=now,
                deadline_at=now + timedelta(seconds=ctx.job_lease_s))
        .execution_options(synchronize_session="fetch")).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    db.session.refresh(job)
    return bool(claimed)


@contextmanager
def lease_kept(job: m.Job, lease_s: float) -> Iterator[None]:
    """Renew the job's lease every third of its length while the block runs.

    A worker that dies stops renewing, so reconciliation sees the lease run out within
    ``lease_s`` and resumes the job elsewhere; a live worker never loses its job.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    job_id, stop = job.id, threading.Event()

    def renew() -> None:
        with app.app_context():
            while not stop.wait(lease_s / 3):
                try:
                    db.session.execute(update(m.Job).where(m.Job.id == job_id, m.Job.state == m.JOB_RUNNING)
                                       .values(deadline_at=utcnow() + timedelta(seconds=lease_s)))
                    db.session.commit()
                except SQLAlchemyError as exc:
                    # The database went away for a moment (restart, failover). Keep renewing: a
                    # renewer that died here would let the lease run out under a live worker, and
                    # reconciliation would then run the job a second time elsewhere.
                    db.session.rollback()
                    log.warning("could not renew the lease of job %s (will try again): %s", job_id, exc)
            db.session.remove()

    thread = threading.Thread(target=renew, name=f"lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def requeue(job: m.Job, technical: str) -> None:
    """Record that the cloud did not answer and put the job back to queued (the task retries)."""
    step(job, "Cloud did not answer; will try again", "failed", technical[:1000])
    job.state = m.JOB_QUEUED
    db.session.commit()


def finish(job: m.Job, state: str, error: str | None = None) -> None:
    """End the job (succeeded or failed, with the plain-words reason) and commit."""
    job.state, job.error, job.finished_at = state, error, utcnow()
    db.session.commit()


def run_playbook(ctx: CloudContext, job: m.Job, playbook: str, variables: Mapping[str, ExtraValue],
                 timeout_s: float) -> PlaybookResult:
    """Run a playbook for ``job``, each of its tasks recorded as a progress step."""
    def record(event: PlaybookEvent) -> None:
        step(job, event.task, event.status, event.message, event.host)
    return ctx.run(playbook, variables, job_id=f"{job.id}-{job.attempts}", timeout_s=timeout_s, on_event=record)



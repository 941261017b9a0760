"""Queue tasks for provisioning: provision, act, reconcile, prune artifacts.

Each task takes ids, lets the domain service check state first (so a duplicate delivery
does nothing), and retries transient cloud errors with backoff; the last attempt turns them
into a failed request with a reason in plain words. Importing this module registers
:func:`enqueue_job` as the way domain services put their jobs on the queue.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from huey import crontab
from huey.exceptions import RetryTask

from cloud_portal.adapters.ansible import prune_artifacts
from cloud_portal.adapters.cloud import CloudContext, cloud
from cloud_portal.adapters.queue import QUEUE_UNAVAILABLE, huey, with_app_context
from cloud_portal.errors import TenantBusy
from cloud_portal.provisioning import leases
from cloud_portal.provisioning.actions import perform_action
from cloud_portal.provisioning.models import JOB_ACTION, JOB_PROVISION, Job
from cloud_portal.provisioning.provision import provision
from cloud_portal.provisioning.reconcile import ReconcileReport, reconcile
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)
#: Huey reads retries at decoration time; the setting's default is used here, and the
#: setting itself decides which attempt is the last (see _final).
RETRIES = 3


def _final(task: Any) -> bool:
    retries_left = getattr(task, "retries", 0) or 0
    allowed = int(current_app.config["JOB_RETRIES"])
    return retries_left <= max(0, RETRIES - allowed)


def _tenant_limit() -> int:
    return int(current_app.config["TENANT_CONCURRENCY"])


def _run_job(job: Callable[..., str], job_key: Any, task: Any) -> str:
    """Run a domain job with the cloud and this attempt's settings; a busy tenant means try soon."""
    try:
        return job(job_key, cloud.required(), final_attempt=_final(task), tenant_limit=_tenant_limit())
    except TenantBusy as exc:
        raise RetryTask(str(exc), delay=1) from None


@huey.task(retries=RETRIES, retry_delay=2, retry_backoff=2, context=True)
@with_app_context
def provision_request(request_id: int, task: Any = None) -> str:
    return _run_job(provision, request_id, task)


@huey.task(retries=RETRIES, retry_delay=2, retry_backoff=2, context=True)
@with_app_context
def act_on_server(job_id: str, task: Any = None) -> str:
    return _run_job(perform_action, job_id, task)


def enqueue_job(job: Job) -> None:
    """Queue the task for a recorded job (after the caller committed it).

    If the queue cannot take the message, the job stays recorded as queued and the caller's
    operation still succeeds: reconciliation enqueues queued jobs that nobody has touched for
    JOB_REQUEUE_AFTER_SECONDS, and a claim is idempotent, so the job runs exactly once.
    """
    try:
        if job.kind == JOB_PROVISION and job.request_id is not None:
            provision_request(job.request_id)
        elif job.kind == JOB_ACTION:
            act_on_server(job.id)
    except QUEUE_UNAVAILABLE as exc:
        log.error("the job queue did not take job %s (%s): %s; it stays queued and reconciliation "
                  "will enqueue it again", job.id, job.kind, exc)


leases.register_enqueuer(enqueue_job)


@huey.periodic_task(crontab(minute="*"))
@with_app_context
def reconcile_periodically() -> None:
    interval = int(current_app.config["RECONCILE_INTERVAL_MINUTES"])
    if interval <= 0:
        log.info("reconciliation is off (RECONCILE_INTERVAL_MINUTES=0)")
        return
    if utcnow().minute % interval:
        return
    reconcile_now()


@huey.periodic_task(crontab(minute="*"))
@with_app_context
def timed_changes() -> int:
    """Every minute: office-hours stops and starts, and leases' warnings, stops and deletions."""
    from cloud_portal.provisioning.timed import run_due_changes
    report = run_due_changes(dict(current_app.config), grace_days=int(current_app.config["EXPIRY_GRACE_DAYS"]))
    for line in report.done:
        log.info("timed change: %s", line)
    return len(report.done)


@with_app_context
def reconcile_now() -> ReconcileReport:
    """One reconciliation run (also `cloud-portal reconcile`)."""
    ctx: CloudContext | None = cloud.context()
    if ctx is None:
        log.info("reconciliation skipped: no CLOUDS_YAML configured")
        return ReconcileReport()
    report = reconcile(ctx, resume=enqueue_job,
                       lost_after=timedelta(seconds=int(current_app.config["JOB_REQUEUE_AFTER_SECONDS"])))
    log.info("reconciliation: %d updated, %d findings, %d jobs resumed, %d jobs failed, %d lost jobs enqueued again",
             len(report.updated), len(report.findings), len(report.resumed_jobs), len(report.failed_jobs),
             len(report.requeued_jobs))
    return report


@huey.periodic_task(crontab(minute="41", hour="2"))
@with_app_context
def prune_runner_artifacts() -> int:
    removed = prune_artifacts(Path(current_app.instance_path) / "runs", int(current_app.config["ARTIFACT_KEEP_DAYS"]))
    log.info("removed %d ansible-runner folders older than %s days", removed, current_app.config["ARTIFACT_KEEP_DAYS"])
    return removed

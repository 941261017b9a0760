"""The action job: start, stop, reboot, resize or delete a server through server_action.yml."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.adapters.openstack import CloudRefused, CloudUnavailable
from cloud_portal.catalog.models import VmSize
from cloud_portal.errors import ProvisioningFailed, TransientJobError
from cloud_portal.extensions import db
from cloud_portal.provisioning import leases
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import servers as server_state
from cloud_portal.provisioning.plain_words import is_transient, plain_words
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.cloud_sync import project_name

#: The Nova statuses each action waits for.
WANTED_STATUS = {"start": {"ACTIVE"}, "stop": {"SHUTOFF"}, "reboot": {"ACTIVE"}, "resize": {"ACTIVE", "SHUTOFF"}}


def perform_action(job_id: str, ctx: CloudContext, *, tenant_limit: int, final_attempt: bool) -> str:
    """Run action job ``job_id`` and wait for the end state; returns the server's status. Idempotent."""
    job = db.session.get(m.Job, job_id)
    if job is None or job.state in (m.JOB_SUCCEEDED, m.JOB_FAILED):
        return job.state if job else "missing"
    if not leases.claim(job, ctx, tenant_limit):
        return job.state
    with leases.lease_kept(job, ctx.job_lease_s):
        return _perform_claimed(job, ctx, final_attempt=final_attempt)


def _perform_claimed(job: m.Job, ctx: CloudContext, *, final_attempt: bool) -> str:
    server = db.session.get(m.Server, job.server_id)
    assert server is not None and job.action is not None
    action, _, size_key = job.action.partition(":")
    variables: dict[str, Any] = {"project_name": project_name(server.tenant), "server_id": server.openstack_id or "",
                                 "action": action}
    size = None
    try:
        if action == "resize":
            size = db.session.scalar(select(VmSize).where(VmSize.key == size_key))
            assert size is not None
            flavor = ctx.cloud.get_flavor(size.flavor)
            if flavor is None:
                raise ProvisioningFailed(f"Could not find flavor {size.flavor}")
            variables.update(flavor=size.flavor, flavor_id=flavor.id, compute_url=ctx.cloud.compute_endpoint())
        if action == "retag":  # the owner as the portal knows it now (a transfer)
            variables["metadata"] = {"portal_owner": server.owner.email,
                                     **({"desktop_user": server.owner.email} if server.kind == m.KIND_DESKTOP else {})}
        result = leases.run_playbook(ctx, job, "server_action.yml", variables, ctx.action_timeout_s)
        if not result.ok:
            raise ProvisioningFailed(result.failure_message or "playbook failed")
        if action == "retag":
            server.problem = None
        elif action == "delete":
            leases.step(job, "Wait for the server to be gone", "started")
            ctx.cloud.wait_for_deleted(server.openstack_id or "", timeout_s=ctx.action_timeout_s)
            leases.step(job, "Wait for the server to be gone", "ok")
            server_state.mark_deleted(server, "deleted at the end of its lease" if job.origin == "expiry"
                                      else "deleted by its owner")
        else:
            wanted = "/".join(sorted(WANTED_STATUS[action]))
            leases.step(job, f"Wait for the server to be {wanted}", "started")
            info = ctx.cloud.wait_for_status(server.openstack_id or "", WANTED_STATUS[action],
                                             timeout_s=ctx.action_timeout_s)
            if info.status == "ERROR":
                raise ProvisioningFailed(info.fault or "the server went into ERROR")
            leases.step(job, f"Wait for the server to be {wanted}", "ok", info.status)
            # The ledger keeps the cause: "schedule:stop" is how a schedule's savings are found.
            cause = f"{job.origin}:{action}" if job.origin else action
            server_state.transition(server, cause=cause, status=info.status)
            server.fixed_ip, server.problem = info.fixed_ip, None
            if action == "resize" and size is not None:
                _apply_resize(server, size, job)
        server.task = None
        leases.finish(job, m.JOB_SUCCEEDED)
        return server.status
    except (CloudUnavailable, ProvisioningFailed, CloudRefused) as exc:
        return _action_trouble(job, action, exc, final_attempt=final_attempt)


def _action_trouble(job: m.Job, action: str, exc: Exception, *, final_attempt: bool) -> str:
    db.session.rollback()
    technical = str(exc)
    transient = not isinstance(exc, CloudRefused) and (isinstance(exc, CloudUnavailable) or is_transient(technical))
    if transient and not final_attempt:
        leases.requeue(job, technical)
        raise TransientJobError(technical) from exc
    words = plain_words(technical)
    leases.step(job, f"{action.capitalize()} failed", "failed", words)
    server = db.session.get(m.Server, job.server_id)
    assert server is not None
    server.task, server.problem = None, words
    if action == "resize":
        quotas.release_by_purpose(f"resize:{job.id}", "resize finished")
    leases.finish(job, m.JOB_FAILED, f"{words}\n\n{technical[:4000]}")
    return server.status


def _apply_resize(server: m.Server, size: VmSize, job: m.Job) -> None:
    """The server has its new size: move its quota hold there (under the tenant's quota lock)."""
    server_id, tenant_id = server.id, server.tenant_id
    db.session.commit()
    with quotas.serialised_for_tenant(tenant_id):
        locked = db.session.get(m.Server, server_id)
        assert locked is not None
        server_state.transition(locked, cause="resize", size=size)
        if locked.reservation_id is not None:
            quotas.resize_held(locked.reservation_id, vcpus=size.vcpus, ram_mib=size.ram_mib, disk_gb=size.disk_gb)
        quotas.release_by_purpose(f"resize:{job.id}", "resize finished")

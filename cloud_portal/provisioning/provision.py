"""The provision job: make a request's server through a playbook, wait for ACTIVE, record it.

Idempotent: a retried or resumed job first looks for the server an earlier attempt made (by
the request uid in its metadata), so a crash mid-job never makes a second server.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.adapters.openstack import REQUEST_ID_KEY, CloudRefused, CloudUnavailable, request_tag
from cloud_portal.audit import service as audit
from cloud_portal.catalog.models import Image
from cloud_portal.errors import ProvisioningFailed, TransientJobError
from cloud_portal.extensions import db
from cloud_portal.i18n import _
from cloud_portal.provisioning import leases, lifecycle
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import servers as server_state
from cloud_portal.provisioning.findings import record_finding
from cloud_portal.provisioning.leftovers import release_request_quota, remove_half_made
from cloud_portal.provisioning.plain_words import is_quota_refusal, is_transient, plain_words
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.cloud_sync import project_id, project_name

log = logging.getLogger(__name__)


def provision(request_id: int, ctx: CloudContext, *, tenant_limit: int, final_attempt: bool) -> str:
    """Run the provision job of request ``request_id``; returns the request's state.

    Raises TransientJobError (retry later) unless ``final_attempt``, in which case the request
    is failed, cleaned up and its quota released.
    """
    request = db.session.get(m.ServerRequest, request_id)
    if request is None or not lifecycle.can(request, lifecycle.START):
        return request.state if request else "missing"  # already done, cancelled or rejected
    job = db.session.scalar(select(m.Job).where(m.Job.request_id == request.id, m.Job.kind == m.JOB_PROVISION)
                            .order_by(m.Job.created_at.desc()))
    if job is None:
        job = leases.new_job(m.JOB_PROVISION, tenant_id=request.tenant_id, request_id=request.id)
        db.session.commit()
    if job.state in (m.JOB_SUCCEEDED, m.JOB_FAILED):
        return request.state
    if not leases.claim(job, ctx, tenant_limit):
        return request.state  # another worker has it
    lifecycle.advance(request, lifecycle.START)
    db.session.commit()
    with leases.lease_kept(job, ctx.job_lease_s):
        return _provision_claimed(request, job, ctx, final_attempt=final_attempt)


def _boot(request: m.ServerRequest, job: m.Job, ctx: CloudContext, project: str) -> str:
    """Run the create playbook; returns the new server's id."""
    tenant = request.tenant
    image = db.session.scalar(select(Image).where(Image.key == request.image_key))
    assert image is not None
    # Ids, not names, save the module a list call each (the names were checked at submit).
    os_image, flavor = ctx.cloud.get_image(image.os_image), ctx.cloud.get_flavor(request.flavor)
    variables: dict[str, Any] = {
        "project_name": project_name(tenant), "server_name": request.name,
        "image": os_image.id if os_image else image.os_image,
        "flavor": flavor.id if flavor else request.flavor,
        "network": ctx.cloud.network_id(ctx.network) or ctx.network, "availability_zone": request.data_hall,
        "security_group": ctx.cloud.default_security_group_id(project) or "default",
        "metadata": {REQUEST_ID_KEY: request_tag(request.uid), "portal_tenant": tenant.slug,
                     "portal_owner": request.owner.email}}
    playbook = "create_server.yml"
    if request.kind == m.KIND_DESKTOP:
        playbook = "create_desktop.yml"
        variables["desktop_user"] = request.owner.email
    result = leases.run_playbook(ctx, job, playbook, variables, ctx.provision_timeout_s)
    if not result.ok:
        raise ProvisioningFailed(result.failure_message or "playbook failed")
    created = result.result_of("Boot desktop" if request.kind == m.KIND_DESKTOP else "Boot server")
    server_id = ((created or {}).get("server") or {}).get("id")
    if not server_id:
        found = ctx.cloud.find_server_by_request(project, request.uid)
        server_id = found.id if found else None
    if not server_id:
        raise ProvisioningFailed("the playbook finished but no server was made")
    return str(server_id)


def _provision_claimed(request: m.ServerRequest, job: m.Job, ctx: CloudContext, *, final_attempt: bool) -> str:
    tenant = request.tenant
    try:
        project = project_id(ctx, tenant)
        if project is None:
            raise ProvisioningFailed(_("%(tenant)s has no OpenStack project yet; ask a platform administrator to "
                                       "run `cloud-portal tenants sync`.", tenant=tenant.name_en))
        # Only a retried or resumed job can find a server of its own; a first attempt saves the
        # look-up (the playbook is idempotent by name as well).
        existing = ctx.cloud.find_server_by_request(project, request.uid) if job.attempts > 1 else None
        if existing is None:
            if job.attempts > 1:
                leases.step(job, "Check for a server made by an earlier attempt", "ok", "none found")
            server_id = _boot(request, job, ctx, project)
        else:
            leases.step(job, "Check for a server made by an earlier attempt", "ok", f"found {existing.id}: resuming")
            server_id = existing.id
        leases.step(job, "Wait for the server to be running", "started")
        info = ctx.cloud.wait_for_status(server_id, {"ACTIVE"}, timeout_s=ctx.provision_timeout_s)
        if info.status == "ERROR":
            raise ProvisioningFailed(info.fault or "the server went into ERROR")
        leases.step(job, "Wait for the server to be running", "ok", f"ACTIVE, address {info.fixed_ip or 'none'}")
        server_state.create_from_request(request, info)
        lifecycle.advance(request, lifecycle.COMPLETE)
        if request.reservation_id is not None:
            quotas.consume(request.reservation_id)
        audit.record(None, "server.create", "server", info.id, tenant_id=request.tenant_id,
                     after={"name": request.name, "request": request.id, "flavor": request.flavor})
        db.session.commit()
        leases.finish(job, m.JOB_SUCCEEDED)
        log.info("request %s provisioned as %s", request.id, info.id)
        return request.state
    except (CloudUnavailable, TransientJobError) as exc:
        return _provision_trouble(request, job, ctx, str(exc), transient=True, final_attempt=final_attempt)
    except ProvisioningFailed as exc:
        transient = is_transient(str(exc))
        return _provision_trouble(request, job, ctx, str(exc), transient=transient, final_attempt=final_attempt)
    except CloudRefused as exc:
        return _provision_trouble(request, job, ctx, str(exc), transient=False, final_attempt=True)


def _provision_trouble(request: m.ServerRequest, job: m.Job, ctx: CloudContext, technical: str, *,
                       transient: bool, final_attempt: bool) -> str:
    db.session.rollback()
    if transient and not final_attempt:
        leases.requeue(job, technical)
        raise TransientJobError(technical)
    words = plain_words(technical)
    leases.step(job, "Provisioning failed", "failed", words)
    cleanup = remove_half_made(request, ctx)
    lifecycle.advance(request, lifecycle.FAIL)
    request.reason = words
    release_request_quota(request, "provisioning failed", None)
    if is_quota_refusal(technical):
        # The portal's limits allowed it but OpenStack's did not: they differ (changed outside
        # the portal?). Platform admins see this among the reconciliation findings.
        record_finding(m.FINDING_QUOTA_REFUSED, f"request:{request.id}", f"OpenStack refused {request.name} for "
                       f"{request.tenant.slug} as over its quota: {technical[:300]}", request.tenant_id)
    leases.finish(job, m.JOB_FAILED, f"{words}\n\n{technical[:4000]}{cleanup.note}")
    audit.record(None, "request.fail", "server_request", request.id, tenant_id=request.tenant_id,
                 after={"reason": words})
    db.session.commit()
    log.warning("request %s failed: %s (%s)", request.id, words, technical[:300])
    return request.state

"""Provisioning: requests, approval, the provision and action jobs' work, and reconciliation.

Pages and the API call the request-side functions (submit, approve, reject, cancel,
request_action); queue jobs call the cloud-side ones (provision, perform_action, reconcile).
All cloud changes go through playbooks (adapters.ansible); reads and waits through
openstacksdk (adapters.openstack).
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select, update

from cloud_portal.accounts.models import User
from cloud_portal.adapters.ansible import PlaybookEvent, PlaybookResult, run_playbook
from cloud_portal.adapters.openstack import (
    REQUEST_ID_KEY,
    CloudError,
    CloudRefused,
    CloudUnavailable,
    OpenStackCloud,
    ServerInfo,
    request_tag,
)
from cloud_portal.audit import service as audit
from cloud_portal.catalog.models import Image, VmSize
from cloud_portal.catalog.service import get_catalog, vm_monthly_estimate
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted, ProvisioningFailed
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.plain_words import is_quota_refusal, is_transient, plain_words
from cloud_portal.provisioning.validation import validate_hostname
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloudContext:
    """Where and how jobs reach the cloud; built from the app settings by the jobs."""

    cloud: OpenStackCloud
    clouds_yaml: Path
    cloud_name: str
    network: str
    runs_dir: Path
    provision_timeout_s: float
    action_timeout_s: float
    job_lease_s: float

    @classmethod
    def configured(cls, settings: Mapping[str, Any], instance_path: str) -> CloudContext | None:
        """The context when a cloud is configured (CLOUDS_YAML set), else None (e.g. unit tests)."""
        return cls.from_settings(settings, instance_path) if settings["CLOUDS_YAML"] else None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], instance_path: str) -> CloudContext:
        clouds_yaml = Path(settings["CLOUDS_YAML"] or Path(instance_path) / "clouds.yaml")
        return cls(cloud=_cloud_for(clouds_yaml, settings["CLOUD_NAME"]), clouds_yaml=clouds_yaml,
                   cloud_name=settings["CLOUD_NAME"], network=settings["CLOUD_NETWORK"],
                   runs_dir=Path(instance_path) / "runs",
                   provision_timeout_s=float(settings["PROVISION_TIMEOUT_SECONDS"]),
                   action_timeout_s=float(settings["ACTION_TIMEOUT_SECONDS"]),
                   job_lease_s=float(settings["JOB_LEASE_SECONDS"]))


_clouds: dict[tuple[Path, str], OpenStackCloud] = {}


def _cloud_for(clouds_yaml: Path, name: str) -> OpenStackCloud:
    key = (clouds_yaml, name)
    if key not in _clouds:
        _clouds[key] = OpenStackCloud(clouds_yaml, name)
    return _clouds[key]


def project_name(tenant: Tenant) -> str:
    """The OpenStack project of a tenant."""
    return f"cwmwl-{tenant.slug}"


def _project_id(ctx: CloudContext, tenant: Tenant) -> str | None:
    """The tenant's project id: recorded by tenants sync, else looked up (cached) by name."""
    return tenant.openstack_project_id or ctx.cloud.find_project_id(project_name(tenant))


# Tenants in the cloud ---------------------------------------------------------------------

def sync_tenants_to_cloud(ctx: CloudContext, tenants: list[Tenant], actor: User | None = None) -> PlaybookResult:
    """Run sync_tenant.yml for ``tenants``: projects, the portal's role in them, Nova quotas.

    Records each tenant's project id. Raises ProvisioningFailed with the playbook's reason.
    The caller commits.
    """
    from cloud_portal.quotas.service import limits_for_tenants
    limits = limits_for_tenants([t.id for t in tenants])
    items = [{"project_name": project_name(t), "description": t.name_en,
              "instances": limits[t.id].tenant.get("instances", 0), "cores": limits[t.id].tenant.get("vcpus", 0),
              "ram": limits[t.id].tenant.get("ram_mib", 0)} for t in tenants]
    job_id = f"sync-tenants-{uuid.uuid4().hex[:12]}"
    result = run_playbook("sync_tenant.yml", {"portal_user": ctx.cloud.service_user(), "tenants": items},
                          job_id=job_id, data_root=ctx.runs_dir, clouds_yaml=ctx.clouds_yaml,
                          cloud_name=ctx.cloud_name, timeout_s=ctx.action_timeout_s)
    if not result.ok:
        raise ProvisioningFailed(f"Syncing tenants to OpenStack failed: {result.failure_message}")
    for tenant in tenants:
        tenant.openstack_project_id = ctx.cloud.find_project_id(project_name(tenant))
        audit.record(actor, "tenant.sync_cloud", "tenant", tenant.slug, tenant_id=tenant.id,
                     after={"project": tenant.openstack_project_id,
                            **{k: v for k, v in limits[tenant.id].tenant.items()}})
    return result


# Request side ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Offer:
    """What a person may order: sizes or desktop templates, images and the tenant's halls."""

    kind: str
    key: str
    name_en: str
    name_cy: str
    flavor: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    monthly: Decimal
    image_key: str | None  # fixed image for desktops


def offers(kind: str) -> list[Offer]:
    catalog = get_catalog()
    if kind == m.KIND_DESKTOP:
        return [Offer(m.KIND_DESKTOP, d.key, d.name_en, d.name_cy, d.flavor, d.vcpus, d.ram_mib, d.disk_gb,
                      d.monthly_price, d.image_key) for d in catalog.desktops]
    return [Offer(m.KIND_VM, s.key, s.name_en, s.name_cy, s.flavor, s.vcpus, s.ram_mib, s.disk_gb,
                  vm_monthly_estimate(s, catalog.rates), None) for s in catalog.vm_sizes]


def _find_offer(kind: str, key: str) -> Offer:
    if kind not in (m.KIND_VM, m.KIND_DESKTOP):
        raise InvalidInput("Choose a virtual machine or a desktop.")
    for offer in offers(kind):
        if offer.key == key:
            return offer
    raise InvalidInput(f"{key!r} is not in the catalog; choose one of the sizes offered.")


def preflight(user: User, *, kind: str, catalog_key: str, image_key: str | None, data_hall: str,
              name: str, cloud: OpenStackCloud | None = None) -> tuple[str, Offer, Image]:
    """Every check that can be made before anything is queued; returns (name, offer, image).

    Order matters: the name is checked first, so a hostile name never reaches anything else.
    With ``cloud`` given, the flavor and image are also checked to exist in OpenStack.
    """
    name = validate_hostname(name)
    offer = _find_offer(kind, catalog_key)
    wanted_image = offer.image_key if kind == m.KIND_DESKTOP else image_key
    image = db.session.scalar(select(Image).where(Image.key == (wanted_image or ""), Image.active.is_(True)))
    if image is None or image.kind != kind:
        raise InvalidInput("Choose one of the images offered for this kind of server.")
    if image.min_disk_gb > offer.disk_gb:
        raise InvalidInput(f"{image.name} needs a disk of at least {image.min_disk_gb} GB; the chosen size "
                           f"has {offer.disk_gb} GB. Choose a larger size.")
    tenant = user.tenant
    if data_hall not in tenant.allowed_halls:
        raise InvalidInput(f"{tenant.name_en} may not place servers in the {data_hall!r} data hall; "
                           f"choose one of: {', '.join(tenant.allowed_halls)}.")
    if cloud is not None:
        try:
            flavor = cloud.get_flavor(offer.flavor)
            os_image = cloud.get_image(image.os_image)
        except CloudUnavailable as exc:
            raise ProvisioningFailed("The cloud is not answering right now, so nothing was ordered. "
                                     "Please try again in a few minutes.") from exc
        if flavor is None:
            raise InvalidInput(f"The size {offer.name_en} ({offer.flavor}) is not available in the cloud; "
                               "the catalog is out of date. Choose another size.")
        if os_image is None or os_image.status != "active":
            raise InvalidInput(f"The image {image.name} is not available in the cloud. Choose another image.")
        if os_image.min_disk > flavor.disk:
            raise InvalidInput(f"{image.name} needs a disk of at least {os_image.min_disk} GB; "
                               f"{offer.name_en} has {flavor.disk} GB. Choose a larger size.")
    return name, offer, image


def needs_approval(tenant: Tenant, offer: Offer) -> bool:
    return offer.monthly > tenant.approval_monthly_cost_over or offer.vcpus > tenant.approval_vcpus_over


def submit_request(user: User, *, kind: str, catalog_key: str, image_key: str | None, data_hall: str,
                   name: str, cloud: OpenStackCloud | None = None) -> m.ServerRequest:
    """Check and accept an order: the request and its quota reservation are written together.

    Returns the committed request, in state ``pending_approval`` (over the tenant's threshold)
    or ``approved`` (the caller enqueues the provision job). Raises InvalidInput,
    QuotaExceeded or ProvisioningFailed with nothing written.
    """
    if not user.active or user.is_finance:
        raise NotPermitted("Your role cannot order servers.")
    name, offer, image = preflight(user, kind=kind, catalog_key=catalog_key, image_key=image_key,
                                   data_hall=data_hall, name=name, cloud=cloud)
    tenant = user.tenant
    state = m.PENDING_APPROVAL if needs_approval(tenant, offer) else m.APPROVED
    db.session.commit()  # the quota lock needs a clean session (see quotas.serialised_for_tenant)
    with quotas.serialised_for_tenant(tenant.id):
        request = m.ServerRequest(
            tenant_id=tenant.id, requester_id=user.id, kind=kind, name=name, catalog_key=offer.key,
            image_key=image.key, data_hall=data_hall, flavor=offer.flavor, vcpus=offer.vcpus,
            ram_mib=offer.ram_mib, disk_gb=offer.disk_gb, monthly_estimate=offer.monthly, state=state)
        db.session.add(request)
        db.session.flush()
        reservation = quotas.reserve(
            tenant, user, instances=1, vcpus=offer.vcpus, ram_mib=offer.ram_mib, disk_gb=offer.disk_gb,
            desktops=1 if kind == m.KIND_DESKTOP else 0, purpose=f"request:{request.id}")
        request.reservation_id = reservation.id
        audit.record(user, "request.submit", "server_request", request.id, tenant_id=tenant.id,
                     after={"name": name, "kind": kind, "size": offer.key, "hall": data_hall, "state": state})
    log.info("request %s (%s %s) submitted by %s: %s", request.id, kind, name, user.email, state)
    return request


def load_request(user: User, request_id: int) -> m.ServerRequest:
    """The request if ``user`` may see it (requester, tenant admins, platform admins), else NotFound."""
    request = db.session.get(m.ServerRequest, request_id)
    if request is None or not (request.requester_id == user.id or user.is_platform_admin
                               or (user.is_tenant_admin and request.tenant_id == user.tenant_id)):
        raise NotFound("There is no such request.")
    return request


def _release_request_quota(request: m.ServerRequest, reason: str, actor: User | None) -> None:
    if request.reservation_id is not None:
        quotas.release(request.reservation_id, reason, actor)


def approve(admin: User, request_id: int) -> m.ServerRequest:
    """A tenant admin approves a waiting request; the caller commits and enqueues provisioning."""
    request = load_request(admin, request_id)
    if not (admin.is_platform_admin or (admin.is_tenant_admin and admin.tenant_id == request.tenant_id)):
        raise NotPermitted("Only an administrator of the tenant can approve this request.")
    if request.state != m.PENDING_APPROVAL:
        raise InvalidInput(f"This request is {request.state.replace('_', ' ')}; only waiting requests "
                           "can be approved.")
    request.state, request.decided_by_id, request.decided_at = m.APPROVED, admin.id, utcnow()
    audit.record(admin, "request.approve", "server_request", request.id, tenant_id=request.tenant_id,
                 before={"state": m.PENDING_APPROVAL}, after={"state": m.APPROVED})
    return request


def reject(admin: User, request_id: int, reason: str) -> m.ServerRequest:
    """Refuse a waiting request with a reason the requester sees; its quota is released."""
    request = load_request(admin, request_id)
    if not (admin.is_platform_admin or (admin.is_tenant_admin and admin.tenant_id == request.tenant_id)):
        raise NotPermitted("Only an administrator of the tenant can reject this request.")
    reason = (reason or "").strip()
    if not 3 <= len(reason) <= 500:
        raise InvalidInput("Give the requester a reason (3 to 500 characters).")
    if request.state != m.PENDING_APPROVAL:
        raise InvalidInput("Only waiting requests can be rejected.")
    request.state, request.reason = m.REJECTED, reason
    request.decided_by_id, request.decided_at = admin.id, utcnow()
    _release_request_quota(request, "request rejected", admin)
    audit.record(admin, "request.reject", "server_request", request.id, tenant_id=request.tenant_id,
                 before={"state": m.PENDING_APPROVAL}, after={"state": m.REJECTED, "reason": reason})
    return request


def cancel(user: User, request_id: int) -> m.ServerRequest:
    """The requester withdraws a request that has not started provisioning."""
    request = load_request(user, request_id)
    if request.requester_id != user.id and not user.is_tenant_admin and not user.is_platform_admin:
        raise NotPermitted("Only the requester can cancel this request.")
    if request.state not in (m.PENDING_APPROVAL, m.APPROVED):
        raise InvalidInput("Only requests that have not started provisioning can be cancelled.")
    before = request.state
    request.state = m.CANCELLED
    _release_request_quota(request, "request cancelled", user)
    audit.record(user, "request.cancel", "server_request", request.id, tenant_id=request.tenant_id,
                 before={"state": before}, after={"state": m.CANCELLED})
    return request


def requests_query(viewer: User, *, scope: str = "mine") -> Select[tuple[m.ServerRequest]]:
    """Requests visible to ``viewer``: own ("mine"), the tenant's ("tenant"), waiting approval ("approvals")."""
    query = select(m.ServerRequest).order_by(m.ServerRequest.created_at.desc(), m.ServerRequest.id.desc())
    if scope == "mine":
        return query.where(m.ServerRequest.requester_id == viewer.id)
    if not (viewer.is_tenant_admin or viewer.is_platform_admin):
        raise NotPermitted("Only administrators can see other people's requests.")
    if not viewer.is_platform_admin:
        query = query.where(m.ServerRequest.tenant_id == viewer.tenant_id)
    if scope == "approvals":
        query = query.where(m.ServerRequest.state == m.PENDING_APPROVAL)
    return query


SORTABLE = {"name": m.Server.name, "created": m.Server.created_at, "status": m.Server.status,
            "size": m.Server.vcpus}


def servers_query(viewer: User, *, scope: str = "mine", sort: str = "created",
                  descending: bool = True) -> Select[tuple[m.Server]]:
    """Servers (not deleted) visible to ``viewer``, sorted by one of SORTABLE."""
    column = SORTABLE.get(sort, m.Server.created_at)
    query = select(m.Server).where(m.Server.status != m.SERVER_DELETED)
    query = query.order_by(column.desc() if descending else column.asc(), m.Server.id.desc())
    if scope == "mine":
        return query.where(m.Server.owner_id == viewer.id)
    if viewer.is_platform_admin and scope == "all":
        return query
    if viewer.is_tenant_admin or viewer.is_platform_admin:
        return query.where(m.Server.tenant_id == viewer.tenant_id)
    raise NotPermitted("Only administrators can see other people's servers.")


def load_server(user: User, server_id: int) -> m.Server:
    server = db.session.get(m.Server, server_id)
    if server is None or not server.can_view(user):
        raise NotFound("There is no such server.")
    return server


def request_action(user: User, server_id: int, action: str, *, new_size: str | None = None) -> tuple[m.Server, m.Job]:
    """Check an action on a server and record the job for it; the caller commits and enqueues."""
    server = load_server(user, server_id)
    if not server.can_operate(user):
        raise NotPermitted("You may not operate this server.")
    if action not in m.ACTIONS:
        raise InvalidInput(f"{action!r} is not an action; choose one of {', '.join(m.ACTIONS)}.")
    if action not in server.allowed_actions():
        state = f"busy ({server.task})" if server.task else server.status.lower()
        raise InvalidInput(f"A server that is {state} cannot be asked to {action}.")
    job = m.Job(id=str(uuid.uuid4()), kind="action", action=action, tenant_id=server.tenant_id,
                server_id=server.id, state=m.JOB_QUEUED)
    details: dict[str, Any] = {"action": action}
    if action == "resize":
        if server.kind != m.KIND_VM:
            raise InvalidInput("Desktops cannot be resized; order another desktop template instead.")
        size = db.session.scalar(select(VmSize).where(VmSize.key == (new_size or ""), VmSize.active.is_(True)))
        if size is None:
            raise InvalidInput("Choose one of the sizes offered.")
        if size.flavor == server.flavor:
            raise InvalidInput("The server already has that size.")
        image = db.session.scalar(select(Image).where(Image.key == server.image_key))
        if image is not None and image.min_disk_gb > size.disk_gb:
            raise InvalidInput(f"{image.name} needs at least {image.min_disk_gb} GB of disk; choose a larger size.")
        details.update(size=size.key)
        job.action = f"resize:{size.key}"
        extra = {"vcpus": max(0, size.vcpus - server.vcpus), "ram_mib": max(0, size.ram_mib - server.ram_mib),
                 "disk_gb": max(0, size.disk_gb - server.disk_gb)}
        if any(extra.values()):
            db.session.commit()
            quotas.reserve(server.tenant, server.owner, purpose=f"resize:{job.id}", actor=user, **extra)
    server.task = action
    db.session.add(job)
    audit.record(user, f"server.{action}", "server", server.id, tenant_id=server.tenant_id, after=details)
    return server, job


def new_provision_job(request: m.ServerRequest) -> m.Job:
    job = m.Job(id=str(uuid.uuid4()), kind="provision", tenant_id=request.tenant_id, request_id=request.id,
                state=m.JOB_QUEUED)
    db.session.add(job)
    return job


# Job side -----------------------------------------------------------------------------------

class TransientJobError(Exception):
    """Worth retrying later (the cloud did not answer); the job layer decides how often."""


class TenantBusy(Exception):
    """The tenant already has its maximum of jobs running; try again shortly."""


def _step(job: m.Job, task: str, status: str, message: str | None = None, host: str = "portal") -> None:
    """Append a progress row and commit, so the requester's page shows it at once."""
    seq = (db.session.scalar(select(func.max(m.JobStep.seq)).where(m.JobStep.job_id == job.id)) or 0) + 1
    db.session.add(m.JobStep(job_id=job.id, seq=seq, task=task[:200], host=host[:100], status=status,
                             message=message))
    db.session.commit()


def _progress_recorder(job: m.Job) -> Callable[[PlaybookEvent], None]:
    def record(event: PlaybookEvent) -> None:
        _step(job, event.task, event.status, event.message, event.host)
    return record


def _start_job(job: m.Job, ctx: CloudContext, tenant_limit: int) -> bool:
    """Claim the job (queued or lease-expired → running). False if another worker holds it."""
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
def _lease_kept(job: m.Job, lease_s: float) -> Iterator[None]:
    """Renew the job's lease every third of its length while the block runs.

    A worker that dies stops renewing, so reconciliation sees the lease run out within
    ``lease_s`` and resumes the job elsewhere; a live worker never loses its job.
    """
    from flask import current_app
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    job_id, stop = job.id, threading.Event()

    def renew() -> None:
        with app.app_context():
            while not stop.wait(lease_s / 3):
                db.session.execute(update(m.Job).where(m.Job.id == job_id, m.Job.state == m.JOB_RUNNING)
                                   .values(deadline_at=utcnow() + timedelta(seconds=lease_s)))
                db.session.commit()
            db.session.remove()

    thread = threading.Thread(target=renew, name=f"lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _finish_job(job: m.Job, state: str, error: str | None = None) -> None:
    job.state, job.error, job.finished_at = state, error, utcnow()
    db.session.commit()


def _playbook(ctx: CloudContext, job: m.Job, playbook: str, variables: dict[str, Any],
              timeout_s: float) -> PlaybookResult:
    return run_playbook(playbook, variables, job_id=f"{job.id}-{job.attempts}", data_root=ctx.runs_dir,
                        clouds_yaml=ctx.clouds_yaml, cloud_name=ctx.cloud_name, timeout_s=timeout_s,
                        on_event=_progress_recorder(job))


def provision(request_id: int, ctx: CloudContext, *, tenant_limit: int, final_attempt: bool) -> str:
    """The provision job: make the request's server, wait for ACTIVE, record it. Idempotent.

    Returns the request state. Raises TransientJobError (retry later) unless ``final_attempt``,
    in which case the request is failed, cleaned up and its quota released.
    """
    request = db.session.get(m.ServerRequest, request_id)
    if request is None or request.state not in (m.APPROVED, m.PROVISIONING):
        return request.state if request else "missing"  # already done, cancelled or rejected
    job = db.session.scalar(select(m.Job).where(m.Job.request_id == request.id, m.Job.kind == "provision")
                            .order_by(m.Job.created_at.desc()))
    if job is None:
        job = new_provision_job(request)
        db.session.commit()
    if job.state in (m.JOB_SUCCEEDED, m.JOB_FAILED):
        return request.state
    if not _start_job(job, ctx, tenant_limit):
        return request.state  # another worker has it
    request.state = m.PROVISIONING
    db.session.commit()
    with _lease_kept(job, ctx.job_lease_s):
        return _provision_claimed(request, job, ctx, final_attempt=final_attempt)


def _provision_claimed(request: m.ServerRequest, job: m.Job, ctx: CloudContext, *, final_attempt: bool) -> str:
    tenant = request.tenant
    try:
        project_id = _project_id(ctx, tenant)
        if project_id is None:
            raise ProvisioningFailed(f"{tenant.name_en} has no OpenStack project yet; ask a platform "
                                     "administrator to run `cloud-portal tenants sync`.")
        # Only a retried or resumed job can find a server of its own; a first attempt saves the
        # look-up (the playbook is idempotent by name as well).
        existing = ctx.cloud.find_server_by_request(project_id, request.uid) if job.attempts > 1 else None
        if existing is None:
            if job.attempts > 1:
                _step(job, "Check for a server made by an earlier attempt", "ok", "none found")
            image = db.session.scalar(select(Image).where(Image.key == request.image_key))
            assert image is not None
            # Ids, not names, save the module a list call each (the names were checked at submit).
            os_image, flavor = ctx.cloud.get_image(image.os_image), ctx.cloud.get_flavor(request.flavor)
            variables: dict[str, Any] = {
                "project_name": project_name(tenant), "server_name": request.name,
                "image": os_image.id if os_image else image.os_image,
                "flavor": flavor.id if flavor else request.flavor,
                "network": ctx.cloud.network_id(ctx.network) or ctx.network, "availability_zone": request.data_hall,
                "security_group": ctx.cloud.default_security_group_id(project_id) or "default",
                "metadata": {REQUEST_ID_KEY: request_tag(request.uid), "portal_tenant": tenant.slug,
                             "portal_owner": request.requester.email}}
            playbook = "create_server.yml"
            if request.kind == m.KIND_DESKTOP:
                playbook = "create_desktop.yml"
                variables["desktop_user"] = request.requester.email
            result = _playbook(ctx, job, playbook, variables, ctx.provision_timeout_s)
            if not result.ok:
                raise ProvisioningFailed(result.failure_message or "playbook failed")
            created = result.result_of("Boot desktop" if request.kind == m.KIND_DESKTOP else "Boot server")
            server_id = ((created or {}).get("server") or {}).get("id")
            if not server_id:
                found = ctx.cloud.find_server_by_request(project_id, request.uid)
                server_id = found.id if found else None
            if not server_id:
                raise ProvisioningFailed("the playbook finished but no server was made")
        else:
            _step(job, "Check for a server made by an earlier attempt", "ok", f"found {existing.id}: resuming")
            server_id = existing.id
        _step(job, "Wait for the server to be running", "started")
        info = ctx.cloud.wait_for_status(server_id, {"ACTIVE"}, timeout_s=ctx.provision_timeout_s)
        if info.status == "ERROR":
            raise ProvisioningFailed(info.fault or "the server went into ERROR")
        _step(job, "Wait for the server to be running", "ok", f"ACTIVE, address {info.fixed_ip or 'none'}")
        _record_new_server(request, info)
        _finish_job(job, m.JOB_SUCCEEDED)
        log.info("request %s provisioned as %s", request.id, info.id)
        return request.state
    except (CloudUnavailable, TransientJobError) as exc:
        return _provision_trouble(request, job, ctx, str(exc), transient=True, final_attempt=final_attempt)
    except ProvisioningFailed as exc:
        transient = is_transient(str(exc))
        return _provision_trouble(request, job, ctx, str(exc), transient=transient, final_attempt=final_attempt)
    except CloudRefused as exc:
        return _provision_trouble(request, job, ctx, str(exc), transient=False, final_attempt=True)


def _record_new_server(request: m.ServerRequest, info: ServerInfo) -> m.Server:
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    if server is None:
        server = m.Server(tenant_id=request.tenant_id, owner_id=request.requester_id, request_id=request.id,
                          kind=request.kind, name=request.name, flavor=request.flavor, vcpus=request.vcpus,
                          ram_mib=request.ram_mib, disk_gb=request.disk_gb, image_key=request.image_key,
                          data_hall=request.data_hall, reservation_id=request.reservation_id, status=info.status)
        db.session.add(server)
    server.openstack_id, server.status, server.fixed_ip = info.id, info.status, info.fixed_ip
    server.last_seen_at = utcnow()
    request.state = m.ACTIVE
    if request.reservation_id is not None:
        quotas.consume(request.reservation_id)
    audit.record(None, "server.create", "server", info.id, tenant_id=request.tenant_id,
                 after={"name": request.name, "request": request.id, "flavor": request.flavor})
    db.session.commit()
    return server


def _provision_trouble(request: m.ServerRequest, job: m.Job, ctx: CloudContext, technical: str, *,
                       transient: bool, final_attempt: bool) -> str:
    db.session.rollback()
    if transient and not final_attempt:
        _step(job, "Cloud did not answer; will try again", "failed", technical[:1000])
        job.state = m.JOB_QUEUED
        db.session.commit()
        raise TransientJobError(technical)
    words = plain_words(technical)
    _step(job, "Provisioning failed", "failed", words)
    cleanup_note = _remove_half_made(request, ctx)
    request.state, request.reason = m.FAILED, words
    _release_request_quota(request, "provisioning failed", None)
    if is_quota_refusal(technical):
        # The portal's limits allowed it but OpenStack's did not: they differ (changed outside
        # the portal?). Platform admins see this among the reconciliation findings.
        _finding("quota_refused", f"request:{request.id}", f"OpenStack refused {request.name} for "
                 f"{request.tenant.slug} as over its quota: {technical[:300]}", request.tenant_id)
    _finish_job(job, m.JOB_FAILED, f"{words}\n\n{technical[:4000]}{cleanup_note}")
    audit.record(None, "request.fail", "server_request", request.id, tenant_id=request.tenant_id,
                 after={"reason": words})
    db.session.commit()
    log.warning("request %s failed: %s (%s)", request.id, words, technical[:300])
    return request.state


def _remove_half_made(request: m.ServerRequest, ctx: CloudContext) -> str:
    """Delete any server a failed request left behind; reconciliation retries if the cloud is down."""
    try:
        project_id = _project_id(ctx, request.tenant)
        if project_id is None:
            return ""
        leftover = ctx.cloud.find_server_by_request(project_id, request.uid)
        if leftover is None:
            return ""
        result = run_playbook("server_action.yml", {"project_name": project_name(request.tenant),
                                                    "server_id": leftover.id, "action": "delete"},
                              job_id=f"cleanup-{request.id}-{uuid.uuid4().hex[:8]}", data_root=ctx.runs_dir,
                              clouds_yaml=ctx.clouds_yaml, cloud_name=ctx.cloud_name,
                              timeout_s=ctx.action_timeout_s)
        return f"\n\nleftover server {leftover.id} deleted: {result.status}"
    except CloudError as exc:
        return f"\n\nleftover check failed ({exc}); reconciliation will remove it"


def perform_action(job_id: str, ctx: CloudContext, *, tenant_limit: int, final_attempt: bool) -> str:
    """The action job: run server_action.yml and wait for the end state. Idempotent."""
    job = db.session.get(m.Job, job_id)
    if job is None or job.state in (m.JOB_SUCCEEDED, m.JOB_FAILED):
        return job.state if job else "missing"
    if not _start_job(job, ctx, tenant_limit):
        return job.state
    with _lease_kept(job, ctx.job_lease_s):
        return _perform_claimed(job, ctx, final_attempt=final_attempt)


def _perform_claimed(job: m.Job, ctx: CloudContext, *, final_attempt: bool) -> str:
    server = db.session.get(m.Server, job.server_id)
    assert server is not None and job.action is not None
    action, _, size_key = job.action.partition(":")
    tenant = server.tenant
    variables: dict[str, Any] = {"project_name": project_name(tenant), "server_id": server.openstack_id or "",
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
        result = _playbook(ctx, job, "server_action.yml", variables, ctx.action_timeout_s)
        if not result.ok:
            raise ProvisioningFailed(result.failure_message or "playbook failed")
        wanted = {"start": {"ACTIVE"}, "stop": {"SHUTOFF"}, "reboot": {"ACTIVE"}, "resize": {"ACTIVE", "SHUTOFF"}}
        if action == "delete":
            _step(job, "Wait for the server to be gone", "started")
            ctx.cloud.wait_for_deleted(server.openstack_id or "", timeout_s=ctx.action_timeout_s)
            _step(job, "Wait for the server to be gone", "ok")
            _mark_deleted(server, "deleted by its owner")
        else:
            _step(job, f"Wait for the server to be {'/'.join(sorted(wanted[action]))}", "started")
            info = ctx.cloud.wait_for_status(server.openstack_id or "", wanted[action],
                                             timeout_s=ctx.action_timeout_s)
            if info.status == "ERROR":
                raise ProvisioningFailed(info.fault or "the server went into ERROR")
            _step(job, f"Wait for the server to be {'/'.join(sorted(wanted[action]))}", "ok", info.status)
            server.status, server.fixed_ip, server.problem = info.status, info.fixed_ip, None
            if action == "resize" and size is not None:
                _apply_resize(server, size, job)
        server.task = None
        _finish_job(job, m.JOB_SUCCEEDED)
        return server.status
    except (CloudUnavailable, ProvisioningFailed, CloudRefused) as exc:
        db.session.rollback()
        technical = str(exc)
        if not isinstance(exc, CloudRefused) and (isinstance(exc, CloudUnavailable) or is_transient(technical)) \
                and not final_attempt:
            _step(job, "Cloud did not answer; will try again", "failed", technical[:1000])
            job.state = m.JOB_QUEUED
            db.session.commit()
            raise TransientJobError(technical) from exc
        words = plain_words(technical)
        _step(job, f"{action.capitalize()} failed", "failed", words)
        server = db.session.get(m.Server, job.server_id)
        assert server is not None
        server.task, server.problem = None, words
        if action == "resize":
            _release_resize_hold(job)
        _finish_job(job, m.JOB_FAILED, f"{words}\n\n{technical[:4000]}")
        return server.status


def _apply_resize(server: m.Server, size: VmSize, job: m.Job) -> None:
    """Move the server's quota hold to the new size (under the tenant's quota lock)."""
    from cloud_portal.quotas.models import QuotaReservation
    server_id, tenant_id = server.id, server.tenant_id
    db.session.commit()
    with quotas.serialised_for_tenant(tenant_id):
        locked = db.session.get(m.Server, server_id)
        assert locked is not None
        locked.flavor, locked.vcpus = size.flavor, size.vcpus
        locked.ram_mib, locked.disk_gb = size.ram_mib, size.disk_gb
        if locked.reservation_id is not None:
            held = db.session.get(QuotaReservation, locked.reservation_id)
            if held is not None:
                held.vcpus, held.ram_mib, held.disk_gb = size.vcpus, size.ram_mib, size.disk_gb
        _release_resize_hold(job)


def _release_resize_hold(job: m.Job) -> None:
    from cloud_portal.quotas.models import QuotaReservation
    hold = db.session.scalar(select(QuotaReservation).where(QuotaReservation.purpose == f"resize:{job.id}"))
    if hold is not None:
        quotas.release(hold.id, "resize finished")


def _mark_deleted(server: m.Server, why: str) -> None:
    server.status, server.deleted_at, server.task = m.SERVER_DELETED, utcnow(), None
    if server.reservation_id is not None:
        quotas.release(server.reservation_id, why)
    audit.record(None, "server.deleted", "server", server.openstack_id or server.id, tenant_id=server.tenant_id,
                 after={"why": why})
    db.session.commit()


def dismiss_failed(user: User, request_id: int, ctx: CloudContext | None) -> m.ServerRequest:
    """The owner clears a failed request: any leftover server is removed, the request hidden."""
    request = load_request(user, request_id)
    if request.state != m.FAILED:
        raise InvalidInput("Only failed requests can be cleaned up.")
    if ctx is not None:
        note = _remove_half_made(request, ctx)
        if "failed" in note:
            raise ProvisioningFailed("The cloud is not answering, so the leftovers could not be checked. "
                                     "Try again in a few minutes.")
    request.state = m.CANCELLED
    request.reason = (request.reason or "") + " (cleaned up by the requester)"
    audit.record(user, "request.cleanup", "server_request", request.id, tenant_id=request.tenant_id)
    return request


# Reconciliation -----------------------------------------------------------------------------

@dataclass
class ReconcileReport:
    updated: list[str]
    findings: list[str]
    resumed_jobs: list[str]
    failed_jobs: list[str]


def _finding(kind: str, openstack_id: str, detail: str, tenant_id: int | None) -> bool:
    exists = db.session.scalar(select(m.ReconcileFinding.id).where(
        m.ReconcileFinding.kind == kind, m.ReconcileFinding.openstack_id == openstack_id))
    if exists is not None:
        return False
    db.session.add(m.ReconcileFinding(kind=kind, openstack_id=openstack_id, detail=detail, tenant_id=tenant_id))
    return True


def reconcile(ctx: CloudContext, *, resume: Callable[[m.Job], None]) -> ReconcileReport:
    """Compare the portal with OpenStack and put the portal right.

    - a server deleted outside the portal is marked deleted (its quota released);
    - a server stopped or started outside is updated;
    - a server in a tenant's project the portal does not know is flagged for admins;
    - a job whose lease ran out (worker died or hung) is resumed (``resume(job)``) once, or
      failed with a reason after two attempts.
    """
    report = ReconcileReport([], [], [], [])
    now = utcnow()
    for job in db.session.scalars(select(m.Job).where(m.Job.state == m.JOB_RUNNING, m.Job.deadline_at < now)):
        if job.attempts < 2:
            job.state = m.JOB_QUEUED
            db.session.commit()
            resume(job)
            report.resumed_jobs.append(job.id)
        else:
            words = "The job stopped without finishing (its worker stopped or hung) and was given up."
            if job.kind == "provision" and job.request_id is not None:
                request = db.session.get(m.ServerRequest, job.request_id)
                if request is not None and request.state == m.PROVISIONING:
                    request.state, request.reason = m.FAILED, words
                    _release_request_quota(request, "job timed out", None)
                    _remove_half_made(request, ctx)
            elif job.server_id is not None:
                server = db.session.get(m.Server, job.server_id)
                if server is not None:
                    server.task, server.problem = None, words
            job.state, job.error, job.finished_at = m.JOB_FAILED, words, now
            _finding("job_timed_out", job.id, words, job.tenant_id)
            db.session.commit()
            report.failed_jobs.append(job.id)
    tenants = list(db.session.scalars(select(Tenant).where(Tenant.is_platform.is_(False), Tenant.active.is_(True))))
    for tenant in tenants:
        project_id = _project_id(ctx, tenant)
        if project_id is None:
            continue
        live = {s.id: s for s in ctx.cloud.list_servers(project_id)}
        known = {s.openstack_id: s for s in db.session.scalars(select(m.Server).where(
            m.Server.tenant_id == tenant.id, m.Server.status != m.SERVER_DELETED, m.Server.openstack_id.is_not(None)))}
        in_flight = {request_tag(r) for r in db.session.scalars(select(m.ServerRequest.uid).where(
            m.ServerRequest.tenant_id == tenant.id, m.ServerRequest.state.in_(m.OPEN_REQUEST_STATES)))}
        for openstack_id, server in known.items():
            info = live.get(openstack_id or "")
            if info is None:
                if server.task == "delete":
                    continue  # the delete job will record it
                _mark_deleted(server, "deleted outside the portal")
                _finding("deleted_outside", openstack_id or "", f"{server.name} was deleted outside the portal",
                         tenant.id)
                report.updated.append(f"{server.name}: deleted outside the portal")
            elif info.status != server.status and server.task is None and info.status in ("ACTIVE", "SHUTOFF", "ERROR"):
                report.updated.append(f"{server.name}: {server.status} → {info.status}")
                audit.record(None, "server.reconcile", "server", openstack_id, tenant_id=tenant.id,
                             before={"status": server.status}, after={"status": info.status})
                server.status = info.status
                if info.status == "ERROR":
                    server.problem = plain_words(info.fault)
            if info is not None:
                server.last_seen_at = now
        for openstack_id, info in live.items():
            if openstack_id in known or info.metadata.get(REQUEST_ID_KEY) in in_flight:
                continue
            tag = info.metadata.get(REQUEST_ID_KEY) or ""
            request = db.session.scalar(select(m.ServerRequest).where(
                m.ServerRequest.uid == tag.removeprefix("request-"))) if tag else None
            if request is not None and request.state in (m.FAILED, m.CANCELLED):
                # Left behind by a failed request when the cloud was down: remove it now.
                _remove_half_made(request, ctx)
                report.updated.append(f"{info.name}: leftover of failed request {request.id} removed")
                continue
            if _finding("unknown_server", openstack_id, f"{info.name} ({info.status}) is in project "
                        f"{project_name(tenant)} but not in the portal", tenant.id):
                report.findings.append(f"{tenant.slug}: unknown server {info.name} ({openstack_id})")
        db.session.commit()
    return report

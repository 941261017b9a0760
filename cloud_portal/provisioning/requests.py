"""Requests for servers and desktops: checks, submission, decisions and the queries pages use.

Each operation is one call that also records and enqueues the provision job where one is due;
the caller commits with ``unit_of_work.commit`` (which enqueues after the commit).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from cloud_portal.accounts.models import User
from cloud_portal.accounts.service import staff_member
from cloud_portal.adapters.cloud import cloud
from cloud_portal.adapters.openstack import CloudUnavailable
from cloud_portal.audit import service as audit
from cloud_portal.catalog.models import Image
from cloud_portal.catalog.offers import Offer, find_offer
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted, OrganisationInactive, ProvisioningFailed
from cloud_portal.extensions import db
from cloud_portal.i18n import N_, _, current_language
from cloud_portal.paging import Listing
from cloud_portal.provisioning import leases, lifecycle
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.leftovers import release_request_quota, remove_half_made
from cloud_portal.provisioning.timed import check_lease
from cloud_portal.provisioning.validation import validate_hostname
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.models import Tenant
from cloud_portal.tenants.service import hall_names
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)

#: Added to a failed request's reason when its requester cleans it up (see cloud_portal.i18n.shown_reason).
CLEANED_UP_SUFFIX = " " + N_("(cleaned up by the requester)")


def preflight(user: User, *, kind: str, catalog_key: str, image_key: str | None, data_hall: str,
              name: str, check_cloud: bool = True) -> tuple[str, Offer, Image]:
    """Every check that can be made before anything is queued; returns (name, offer, image).

    Order matters: the name is checked first, so a hostile name never reaches anything else.
    When a cloud is configured (and ``check_cloud``), the flavor and image must exist in it.
    """
    name = validate_hostname(name)
    offer = find_offer(kind, catalog_key)
    wanted_image = offer.image_key if kind == m.KIND_DESKTOP else image_key
    image = db.session.scalar(select(Image).where(Image.key == (wanted_image or ""), Image.active.is_(True)))
    if image is None or image.kind != kind:
        raise InvalidInput(_("Choose one of the images offered for this kind of server."))
    if image.min_disk_gb > offer.disk_gb:
        raise InvalidInput(_("%(image)s needs a disk of at least %(needed)s GB; the chosen size has %(has)s GB. "
                             "Choose a larger size.", image=image.display_name(current_language()),
                             needed=image.min_disk_gb, has=offer.disk_gb))
    tenant = user.tenant
    if data_hall not in tenant.allowed_halls:
        names = hall_names(current_language())
        raise InvalidInput(_("%(tenant)s may not place servers in the %(hall)s data hall; choose one of: %(halls)s.",
                             tenant=tenant.display_name(current_language()), hall=repr(data_hall),
                             halls=", ".join(names.get(h, h) for h in tenant.allowed_halls)))
    ctx = cloud.context() if check_cloud else None
    if ctx is not None:
        try:
            flavor = ctx.cloud.get_flavor(offer.flavor)
            os_image = ctx.cloud.get_image(image.os_image)
        except CloudUnavailable as exc:
            raise ProvisioningFailed(_("The cloud is not answering right now, so nothing was ordered. "
                                       "Please try again in a few minutes.")) from exc
        if flavor is None:
            raise InvalidInput(_("The size %(size)s (%(flavor)s) is not available in the cloud; the catalog is out "
                                 "of date. Choose another size.", size=offer.display_name(current_language()),
                                 flavor=offer.flavor))
        if os_image is None or os_image.status != "active":
            raise InvalidInput(_("The image %(image)s is not available in the cloud. Choose another image.",
                                 image=image.display_name(current_language())))
        if os_image.min_disk > flavor.disk:
            raise InvalidInput(_("%(image)s needs a disk of at least %(needed)s GB; %(size)s has %(has)s GB. Choose a "
                                 "larger size.", image=image.display_name(current_language()),
                                 needed=os_image.min_disk, size=offer.display_name(current_language()),
                                 has=flavor.disk))
    return name, offer, image


#: Further reasons an order must wait for approval, registered by other domains (billing's
#: budget rule), so provisioning need not know about them.
_approval_rules: list[Callable[[Tenant], bool]] = []


def register_approval_rule(rule: Callable[[Tenant], bool]) -> None:
    """Make orders of a tenant for which ``rule(tenant)`` is true wait for approval."""
    _approval_rules.append(rule)


def needs_approval(tenant: Tenant, offer: Offer) -> bool:
    """Over the tenant's cost or vCPU threshold (or a registered rule): a tenant admin must approve."""
    if offer.monthly > tenant.approval_monthly_cost_over or offer.vcpus > tenant.approval_vcpus_over:
        return True
    return any(rule(tenant) for rule in _approval_rules)


def owner_for(user: User, for_email: str | None) -> User:
    """The person an order by ``user`` is for: themselves (no address given), or, for a tenant
    admin, an active member of staff of their tenant named by e-mail address."""
    wanted = (for_email or "").strip().lower()
    if not wanted or wanted == user.email.lower():
        return user
    if not user.is_tenant_admin:
        raise NotPermitted(_("Only a tenant administrator can order for someone else."))
    return staff_member(user.tenant, wanted)


def submit_request(user: User, *, kind: str, catalog_key: str, image_key: str | None, data_hall: str,
                   name: str, for_email: str | None = None, expires_on: date | None = None) -> m.ServerRequest:
    """Check and accept an order: the request and its quota reservation are written together.

    ``for_email`` names the person it is for when a tenant admin orders for a member of staff
    (see :func:`owner_for`): it counts against that person's per-person limits, they own the
    server and pay for it. ``expires_on`` is the last day it is needed (the tenant may require
    one for some sizes, and limits how far ahead; see :func:`timed.check_lease`): the server is
    stopped when it ends and deleted after the grace period. Returns the request in state
    ``pending_approval`` (over the tenant's threshold) or ``approved``, whose provision job is
    enqueued when the caller commits. Raises InvalidInput, NotPermitted, QuotaExceeded or
    ProvisioningFailed with nothing written.
    """
    if not user.active or user.is_finance:
        raise NotPermitted(_("Your role cannot order servers."))
    if not user.tenant.active:
        raise OrganisationInactive()
    owner = owner_for(user, for_email)
    name, offer, image = preflight(user, kind=kind, catalog_key=catalog_key, image_key=image_key,
                                   data_hall=data_hall, name=name)
    tenant = user.tenant
    expires_at = check_lease(tenant, offer.key, expires_on)
    state = m.PENDING_APPROVAL if needs_approval(tenant, offer) else m.APPROVED
    db.session.commit()  # the quota lock needs a clean session (see quotas.serialised_for_tenant)
    with quotas.serialised_for_tenant(tenant.id):
        request = m.ServerRequest(
            tenant_id=tenant.id, requester_id=user.id, owner_id=owner.id, kind=kind, name=name,
            catalog_key=offer.key, expires_at=expires_at,
            image_key=image.key, data_hall=data_hall, flavor=offer.flavor, vcpus=offer.vcpus,
            ram_mib=offer.ram_mib, disk_gb=offer.disk_gb, monthly_estimate=offer.monthly, state=state)
        db.session.add(request)
        db.session.flush()
        reservation = quotas.reserve(
            tenant, owner, actor=user, instances=1, vcpus=offer.vcpus, ram_mib=offer.ram_mib, disk_gb=offer.disk_gb,
            desktops=1 if kind == m.KIND_DESKTOP else 0, purpose=f"request:{request.id}")
        request.reservation_id = reservation.id
        audit.record(user, "request.submit", "server_request", request.id, tenant_id=tenant.id,
                     after={"name": name, "kind": kind, "size": offer.key, "hall": data_hall, "state": state,
                            "for": owner.email})
    if request.state == m.APPROVED:
        _queue_provisioning(request)
    log.info("request %s (%s %s) submitted by %s for %s: %s", request.id, kind, name, user.email, owner.email,
             state)
    return request


def _queue_provisioning(request: m.ServerRequest) -> m.Job:
    job = leases.new_job(m.JOB_PROVISION, tenant_id=request.tenant_id, request_id=request.id)
    leases.enqueue(job)
    return job


def load_request(user: User, request_id: int) -> m.ServerRequest:
    """The request if ``user`` may see it (requester, tenant admins, platform admins), else NotFound."""
    request = db.session.get(m.ServerRequest, request_id)
    if request is None or not request.can_view(user):
        raise NotFound(_("There is no such request."))
    return request


def approve(admin: User, request_id: int) -> m.ServerRequest:
    """A tenant admin approves a waiting request; provisioning is enqueued when the caller commits."""
    request = load_request(admin, request_id)
    before = lifecycle.advance(request, lifecycle.APPROVE, admin)
    request.decided_by_id, request.decided_at = admin.id, utcnow()
    audit.record(admin, "request.approve", "server_request", request.id, tenant_id=request.tenant_id,
                 before={"state": before}, after={"state": request.state})
    _queue_provisioning(request)
    return request


def reject(admin: User, request_id: int, reason: str) -> m.ServerRequest:
    """Refuse a waiting request with a reason the requester sees; its quota is released."""
    request = load_request(admin, request_id)
    lifecycle.authorise(request, lifecycle.REJECT, admin)
    reason = (reason or "").strip()
    if not 3 <= len(reason) <= 500:
        raise InvalidInput(_("Give the requester a reason (3 to 500 characters)."))
    before = lifecycle.advance(request, lifecycle.REJECT, admin)
    request.reason, request.decided_by_id, request.decided_at = reason, admin.id, utcnow()
    release_request_quota(request, "request rejected", admin)
    audit.record(admin, "request.reject", "server_request", request.id, tenant_id=request.tenant_id,
                 before={"state": before}, after={"state": m.REJECTED, "reason": reason})
    return request


def cancel(user: User, request_id: int) -> m.ServerRequest:
    """The requester (or an admin) withdraws a request that has not started provisioning."""
    request = load_request(user, request_id)
    before = lifecycle.advance(request, lifecycle.CANCEL, user)
    release_request_quota(request, "request cancelled", user)
    audit.record(user, "request.cancel", "server_request", request.id, tenant_id=request.tenant_id,
                 before={"state": before}, after={"state": m.CANCELLED})
    return request


def dismiss_failed(user: User, request_id: int) -> m.ServerRequest:
    """The owner clears a failed request: any leftover server is removed, the request hidden."""
    request = load_request(user, request_id)
    lifecycle.authorise(request, lifecycle.CLEAN_UP, user)
    if not lifecycle.can(request, lifecycle.CLEAN_UP):
        raise InvalidInput(_("Only failed requests can be cleaned up."))
    ctx = cloud.context()
    if ctx is not None and not remove_half_made(request, ctx).checked:
        raise ProvisioningFailed(_("The cloud is not answering, so the leftovers could not be checked. "
                                   "Try again in a few minutes."))
    lifecycle.advance(request, lifecycle.CLEAN_UP, user)
    request.reason = (request.reason or "") + CLEANED_UP_SUFFIX
    audit.record(user, "request.cleanup", "server_request", request.id, tenant_id=request.tenant_id)
    return request


def requests_listing(viewer: User, *, scope: str = "mine") -> Listing[m.ServerRequest]:
    """Requests visible to ``viewer``, newest first: own ("mine"), the tenant's ("tenant"), waiting
    approval ("approvals")."""
    # The server and the requester are loaded with the page (one query each), not one per row.
    query = select(m.ServerRequest).options(selectinload(m.ServerRequest.server),
                                            selectinload(m.ServerRequest.requester),
                                            selectinload(m.ServerRequest.owner))
    keys = (m.ServerRequest.created_at, m.ServerRequest.id)
    if scope == "mine":  # made by the viewer, or by a tenant admin for them
        return Listing(query.where(or_(m.ServerRequest.requester_id == viewer.id,
                                       m.ServerRequest.owner_id == viewer.id)), keys)
    if not (viewer.is_tenant_admin or viewer.is_platform_admin):
        raise NotPermitted(_("Only administrators can see other people's requests."))
    if not viewer.is_platform_admin:
        query = query.where(m.ServerRequest.tenant_id == viewer.tenant_id)
    if scope == "approvals":
        query = query.where(m.ServerRequest.state == m.PENDING_APPROVAL)
    return Listing(query, keys)

"""Quota-increase requests: asked for by members, decided by platform admins."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import func, select

from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted
from cloud_portal.extensions import db
from cloud_portal.i18n import _, current_language, for_recipient, request_state_word
from cloud_portal.paging import Listing
from cloud_portal.quotas.limits import set_limits
from cloud_portal.quotas.models import (
    INCREASE_APPROVED,
    INCREASE_DECLINED,
    INCREASE_OPEN,
    QUOTA_RESOURCES,
    QuotaIncreaseRequest,
)
from cloud_portal.quotas.usage import resource_words, serialised_for_tenant
from cloud_portal.timeutil import utcnow

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)


def create_increase(user: User, wanted: dict[str, Any], reason: str) -> QuotaIncreaseRequest:
    """A member or tenant admin asks for more of their tenant's quota; the caller commits.

    ``wanted`` maps resources to the *extra* amount wanted (None or 0 = nothing more).
    """
    if not user.can_ask_quota_increase:
        raise NotPermitted(_("Only people in a member organisation can ask for more quota."))
    amounts: dict[str, int | None] = {}
    for resource in QUOTA_RESOURCES:
        value = wanted.get(resource)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(_("%(words)s: enter a whole number of 0 or more, or leave it blank.",
                                 words=resource_words(resource)))
        amounts[resource] = value or None
    if not any(amounts.values()):
        raise InvalidInput(_("Say how much more of at least one resource you need."))
    reason = (reason or "").strip()
    if not 3 <= len(reason) <= 1000:
        raise InvalidInput(_("Say why you need more (3 to 1000 characters)."))
    increase = QuotaIncreaseRequest(tenant_id=user.tenant_id, requester_id=user.id, reason=reason,
                                    state=INCREASE_OPEN, **amounts)
    db.session.add(increase)
    db.session.flush()
    audit.record(user, "quota.increase_request", "quota_increase_request", increase.id,
                 tenant_id=user.tenant_id, after={"wanted": increase.wanted(), "reason": reason})
    log.info("quota increase %s asked by %s: %s", increase.id, user.email, increase.wanted())
    return increase


def increases_listing(viewer: User, *, scope: str = "mine") -> Listing[QuotaIncreaseRequest]:
    """Increase requests, newest first: own ("mine"), or, for platform admins, the open ones,
    the decided ones or all of them ("open", "decided", "all")."""
    query = select(QuotaIncreaseRequest)
    keys = (QuotaIncreaseRequest.created_at, QuotaIncreaseRequest.id)
    if scope == "mine":
        return Listing(query.where(QuotaIncreaseRequest.requester_id == viewer.id), keys)
    if not viewer.can_edit_quotas:
        raise NotPermitted(_("Only platform administrators can see every quota-increase request."))
    if scope == "open":
        return Listing(query.where(QuotaIncreaseRequest.state == INCREASE_OPEN), keys)
    if scope == "decided":
        return Listing(query.where(QuotaIncreaseRequest.state != INCREASE_OPEN), keys)
    return Listing(query, keys)


def count_open_increases(viewer: User) -> int:
    """How many increase requests wait for a decision (platform admins)."""
    query = increases_listing(viewer, scope="open").query
    return db.session.scalar(query.with_only_columns(func.count())) or 0


def load_increase(viewer: User, increase_id: int) -> QuotaIncreaseRequest:
    """The increase request if ``viewer`` may see it (the requester, platform admins), else NotFound."""
    increase = db.session.get(QuotaIncreaseRequest, increase_id)
    if increase is None or not (increase.requester_id == viewer.id or viewer.can_edit_quotas):
        raise NotFound(_("There is no such quota-increase request."))
    return increase


def _open_increase_for_decision(admin: User, increase_id: int) -> QuotaIncreaseRequest:
    if not admin.can_edit_quotas:
        raise NotPermitted(_("Only platform administrators can decide quota-increase requests."))
    increase = load_increase(admin, increase_id)
    if increase.state != INCREASE_OPEN:
        raise InvalidInput(_("This quota-increase request is already %(state)s.",
                             state=request_state_word(increase.state)))
    return increase


def approve_increase(admin: User, increase_id: int, reason: str = "") -> QuotaIncreaseRequest:
    """Approve: each tenant limit asked about goes up by the extra amount wanted. **Commits.**

    The limits are read and raised under the tenant's quota lock (via :func:`set_limits`),
    together with the request's new state. The caller syncs OpenStack and notifies the requester.
    """
    increase = _open_increase_for_decision(admin, increase_id)
    tenant = increase.tenant
    increase_id = increase.id
    db.session.commit()  # the quota lock needs a clean session
    with serialised_for_tenant(tenant.id) as limits:
        fresh = db.session.get(QuotaIncreaseRequest, increase_id)  # re-read under the lock
        if fresh is None or fresh.state != INCREASE_OPEN:
            raise InvalidInput(_("This quota-increase request was decided meanwhile."))
        increase = fresh
        new_tenant = dict(limits.tenant)
        for resource, extra in increase.wanted().items():
            new_tenant[resource] = new_tenant.get(resource, 0) + extra
        new_tenant = {r: new_tenant.get(r, 0) for r in QUOTA_RESOURCES}
        set_limits(admin, tenant, new_tenant, dict(limits.per_user), confirm_below_usage=True)
        increase.state, increase.decided_by_id, increase.decided_at = INCREASE_APPROVED, admin.id, utcnow()
        increase.decision_reason = (reason or "").strip()[:500] or None
        audit.record(admin, "quota.increase_approve", "quota_increase_request", increase.id,
                     tenant_id=tenant.id, before={"state": INCREASE_OPEN},
                     after={"state": INCREASE_APPROVED, "limits": new_tenant})
    log.info("quota increase %s approved by %s", increase_id, admin.email)
    return increase


def decline_increase(admin: User, increase_id: int, reason: str) -> QuotaIncreaseRequest:
    """Decline with a reason the requester sees (portal and e-mail); the caller commits."""
    increase = _open_increase_for_decision(admin, increase_id)
    reason = (reason or "").strip()
    if not 3 <= len(reason) <= 500:
        raise InvalidInput(_("Give the requester a reason (3 to 500 characters)."))
    increase.state, increase.decided_by_id, increase.decided_at = INCREASE_DECLINED, admin.id, utcnow()
    increase.decision_reason = reason
    audit.record(admin, "quota.increase_decline", "quota_increase_request", increase.id,
                 tenant_id=increase.tenant_id, before={"state": INCREASE_OPEN},
                 after={"state": INCREASE_DECLINED, "reason": reason})
    log.info("quota increase %s declined by %s", increase.id, admin.email)
    return increase


def notify_increase_decision(settings: dict[str, Any], increase: QuotaIncreaseRequest) -> bool:
    """E-mail the requester the decision and its reason. Never raises: a lost e-mail is logged,
    and the decision (already committed) stands; the requester also sees it in the portal."""
    from cloud_portal.adapters.mail import MailError, send_mail

    def compose() -> tuple[str, str]:
        wanted = ", ".join(f"{amount} {resource_words(r)}" for r, amount in increase.wanted().items())
        tenant = increase.tenant.display_name(current_language())
        if increase.state == INCREASE_APPROVED:
            subject = _("Quota increase approved")
            lines = [_("Your request for more quota for %(tenant)s (%(wanted)s) was approved.",
                       tenant=tenant, wanted=wanted)]
        else:
            subject = _("Quota increase declined")
            lines = [_("Your request for more quota for %(tenant)s (%(wanted)s) was declined.",
                       tenant=tenant, wanted=wanted)]
        if increase.decision_reason:
            lines.append(_("Reason: %(reason)s", reason=increase.decision_reason))
        if increase.state == INCREASE_APPROVED:
            lines.append(_("The new limits apply now."))
        return subject, "\n\n".join(lines) + "\n"

    subject, body = for_recipient(increase.requester.language, compose)
    try:
        return send_mail(settings, increase.requester.email, subject, body)
    except MailError as exc:
        log.warning("quota increase %s: e-mail to the requester failed: %s", increase.id, exc)
        return False


@dataclass(frozen=True)
class IncreaseDecision:
    """The decided request, and why OpenStack was not updated (None: it was, or no cloud)."""

    increase: QuotaIncreaseRequest
    cloud_sync_error: str | None


def decide_increase(admin: User, increase_id: int, decision: str, reason: str = "") -> IncreaseDecision:
    """Approve (limits raised, OpenStack synced) or decline a request; e-mail the requester. **Commits.**

    ``decision`` is "approve" or "decline" (which needs a reason of 3 to 500 characters).
    """
    from cloud_portal.tenants.cloud_sync import push_tenant_limits
    failed = None
    if decision == "approve":
        increase = approve_increase(admin, increase_id, reason)
        failed = push_tenant_limits(increase.tenant, admin)
    elif decision == "decline":
        increase = decline_increase(admin, increase_id, reason)
        db.session.commit()
    else:
        raise InvalidInput(_("Decide with approve or decline."))
    notify_increase_decision(dict(current_app.config), increase)
    return IncreaseDecision(increase, failed)

"""Editing quota limits: platform admins' changes (checked against usage) and tenants.yaml's."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, NotPermitted
from cloud_portal.extensions import db
from cloud_portal.i18n import _, current_language
from cloud_portal.quotas.models import QUOTA_RESOURCES, SCOPE_PER_USER, SCOPE_TENANT, QuotaLimit, QuotaUsage
from cloud_portal.quotas.usage import (
    TenantLimits,
    lock_tenant_in_transaction,
    resource_words,
    serialised_for_tenant,
    usage_for_tenant,
)
from cloud_portal.tenants.models import Tenant

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)


class LimitsBelowUsage(InvalidInput):
    """New limits are below current usage; repeat with ``confirm_below_usage=True`` to apply.

    ``problems`` holds one sentence per resource that would be over its new limit.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join([*problems, _("Confirm to apply the lower limits anyway.")]))
        self.problems = problems


def _clean_limits(tenant_limits: dict[str, Any],
                  per_user_limits: dict[str, Any]) -> tuple[dict[str, int], dict[str, int | None]]:
    """Validated copies: every tenant limit a whole number ≥ 0, per-person ones None or ≤ the tenant's."""
    tenant_clean: dict[str, int] = {}
    per_user_clean: dict[str, int | None] = {}
    for resource in QUOTA_RESOURCES:
        value = tenant_limits.get(resource)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(_("The tenant limit for %(words)s must be a whole number of 0 or more, not %(value)s.",
                                 words=resource_words(resource), value=repr(value)))
        tenant_clean[resource] = value
        per_user = per_user_limits.get(resource)
        if per_user is not None:
            if isinstance(per_user, bool) or not isinstance(per_user, int) or per_user < 0:
                raise InvalidInput(_("The limit for each person for %(words)s must be a whole number of 0 or more, "
                                     "or blank for no limit, not %(value)s.", words=resource_words(resource),
                                     value=repr(per_user)))
            if per_user > value:
                raise InvalidInput(_("The limit for each person (%(amount)s %(words)s) cannot be more than the "
                                     "tenant's limit (%(limit)s).", amount=per_user, words=resource_words(resource),
                                     limit=value))
        per_user_clean[resource] = per_user
    return tenant_clean, per_user_clean


def _over_usage(tenant: Tenant, tenant_new: dict[str, int], per_user_new: dict[str, int | None],
                before: TenantLimits) -> list[str]:
    """Sentences naming each lowered limit that current usage is above."""
    usage = usage_for_tenant(tenant.id)
    name = tenant.display_name(current_language())
    problems = [_("%(tenant)s uses %(used)s %(words)s; the new limit %(limit)s is below that.", tenant=name,
                  used=usage[r], words=resource_words(r), limit=limit)
                for r, limit in tenant_new.items()
                if limit < before.tenant.get(r, limit + 1) and usage[r] > limit]
    lowered = [r for r, limit in per_user_new.items() if limit is not None
               and ((old := before.per_user.get(r)) is None or limit < old)]
    if lowered:
        rows = db.session.execute(select(*[getattr(QuotaUsage, r) for r in lowered])
                                  .where(QuotaUsage.tenant_id == tenant.id)).all()
        for i, resource in enumerate(lowered):
            limit = per_user_new[resource]
            assert limit is not None
            over = [row[i] for row in rows if row[i] > limit]
            if over:
                problems.append(_("The new limit for each person of %(limit)s %(words)s is below what %(count)s of "
                                  "%(tenant)s's people use (the most is %(most)s).", limit=limit,
                                  words=resource_words(resource), count=len(over), tenant=name, most=max(over)))
    return problems


def set_limits(actor: User, tenant: Tenant, tenant_limits: dict[str, Any], per_user_limits: dict[str, Any],
               confirm_below_usage: bool = False) -> TenantLimits:
    """Replace ``tenant``'s limits (all five tenant limits; per-person ones None = no limit).

    **Commits** (under the tenant's quota lock, so no reservation slips in between the usage
    check and the change; as with :func:`serialised_for_tenant`, the session must hold no
    uncommitted writes on SQLite). Platform admins only. Raises InvalidInput for values that are not
    whole numbers ≥ 0 or a per-person limit above the tenant's, and :class:`LimitsBelowUsage`
    (nothing written) when a lowered limit is below current usage and ``confirm_below_usage``
    is false. The change is audit-logged with before and after. Returns the new limits.

    :func:`change_limits` also pushes the new limits to OpenStack.
    A later ``tenants sync`` puts tenants.yaml's limits back.
    """
    if not actor.can_edit_quotas:
        raise NotPermitted(_("Only platform administrators can change quota limits."))
    if tenant.is_platform:
        raise InvalidInput(_("The platform's own tenant has no quota limits."))
    tenant_new, per_user_new = _clean_limits(tenant_limits, per_user_limits)
    with serialised_for_tenant(tenant.id) as before:
        if not confirm_below_usage:
            problems = _over_usage(tenant, tenant_new, per_user_new, before)
            if problems:
                raise LimitsBelowUsage(problems)
        rows = {(row.scope, row.resource): row for row in db.session.scalars(
            select(QuotaLimit).where(QuotaLimit.tenant_id == tenant.id))}
        wanted: dict[tuple[str, str], int | None] = {(SCOPE_TENANT, r): v for r, v in tenant_new.items()}
        wanted.update({(SCOPE_PER_USER, r): v for r, v in per_user_new.items()})
        for key, value in wanted.items():
            row = rows.get(key)
            if value is None:
                if row is not None:
                    db.session.delete(row)
            elif row is None:
                db.session.add(QuotaLimit(tenant_id=tenant.id, scope=key[0], resource=key[1], limit=value))
            else:
                row.limit = value
        audit.record(actor, "quota.set_limits", "tenant", tenant.slug, tenant_id=tenant.id,
                     before={"tenant": dict(before.tenant), "per_user": dict(before.per_user)},
                     after={"tenant": tenant_new, "per_user": per_user_new})
    log.info("quota limits of %s changed by %s: %s, each person %s", tenant.slug, actor.email,
             tenant_new, per_user_new)
    return TenantLimits(tenant=tenant_new, per_user=per_user_new)



def change_limits(actor: User, tenant: Tenant, tenant_limits: dict[str, Any], per_user_limits: dict[str, Any],
                  confirm_below_usage: bool = False) -> str | None:
    """A platform admin's limit change: :func:`set_limits` (commits), then OpenStack's copy.

    Returns None when OpenStack took the new limits (or no cloud is configured), else why not;
    the portal's limits stand either way.
    """
    from cloud_portal.tenants.cloud_sync import push_tenant_limits
    set_limits(actor, tenant, tenant_limits, per_user_limits, confirm_below_usage=confirm_below_usage)
    return push_tenant_limits(tenant, actor)


def apply_file_limits(tenant: Tenant, scope: str, limits: dict[str, int | None], actor: User | None) -> bool:
    """Make ``tenant``'s limits of ``scope`` what tenants.yaml says (None = no limit). True if changed.

    Part of ``tenants sync``: runs inside the sync's transaction (the caller commits) and takes
    the tenant's quota lock there, so no reservation is checked against half-written limits.
    """
    lock_tenant_in_transaction(tenant.id)
    existing = {q.resource: q for q in db.session.scalars(
        select(QuotaLimit).where(QuotaLimit.tenant_id == tenant.id, QuotaLimit.scope == scope))}
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for resource, limit in limits.items():
        row = existing.get(resource)
        if limit is None:
            if row is not None:
                before[resource], after[resource] = row.limit, None
                db.session.delete(row)
            continue
        if row is None:
            db.session.add(QuotaLimit(tenant_id=tenant.id, scope=scope, resource=resource, limit=limit))
            before[resource], after[resource] = None, limit
        elif row.limit != limit:
            before[resource], after[resource] = row.limit, limit
            row.limit = limit
    if after:
        audit.record(actor, "quota.update", "tenant", tenant.slug, tenant_id=tenant.id,
                     before={"scope": scope, **before}, after={"scope": scope, **after})
    return bool(after)

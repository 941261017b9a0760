"""Tenants in the cloud: each member tenant is an OpenStack project with Nova quotas.

Changes go through the sync_tenant playbook; reads (project ids) through openstacksdk.
"""
from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from cloud_portal.adapters.ansible import PlaybookResult
from cloud_portal.adapters.cloud import CloudContext, cloud
from cloud_portal.audit import service as audit
from cloud_portal.errors import PortalError, ProvisioningFailed
from cloud_portal.extensions import db
from cloud_portal.quotas.usage import limits_for_tenants
from cloud_portal.tenants.models import Tenant

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User

log = logging.getLogger(__name__)


def project_name(tenant: Tenant) -> str:
    """The OpenStack project of a tenant."""
    return f"cwmwl-{tenant.slug}"


def project_id(ctx: CloudContext, tenant: Tenant) -> str | None:
    """The tenant's project id: recorded by tenants sync, else looked up (cached) by name."""
    return tenant.openstack_project_id or ctx.cloud.find_project_id(project_name(tenant))


def sync_tenants_to_cloud(ctx: CloudContext, tenants: list[Tenant], actor: User | None = None) -> PlaybookResult:
    """Run sync_tenant.yml for ``tenants``: projects, the portal's role in them, Nova quotas.

    Records each tenant's project id. Raises ProvisioningFailed with the playbook's reason.
    The caller commits.
    """
    limits = limits_for_tenants([t.id for t in tenants])
    items = [{"project_name": project_name(t), "description": t.name_en,
              "instances": limits[t.id].tenant.get("instances", 0), "cores": limits[t.id].tenant.get("vcpus", 0),
              "ram": limits[t.id].tenant.get("ram_mib", 0)} for t in tenants]
    result = ctx.run("sync_tenant.yml", {"portal_user": ctx.cloud.service_user(), "tenants": items},
                     job_id=f"sync-tenants-{uuid.uuid4().hex[:12]}", timeout_s=ctx.action_timeout_s)
    if not result.ok:
        raise ProvisioningFailed(f"Syncing tenants to OpenStack failed: {result.failure_message}")
    for tenant in tenants:
        tenant.openstack_project_id = ctx.cloud.find_project_id(project_name(tenant))
        audit.record(actor, "tenant.sync_cloud", "tenant", tenant.slug, tenant_id=tenant.id,
                     after={"project": tenant.openstack_project_id, **dict(limits[tenant.id].tenant)})
    return result


def push_tenant_limits(tenant: Tenant, actor: User | None) -> str | None:
    """Push ``tenant``'s limits to its OpenStack project when a cloud is configured. **Commits.**

    Returns None on success (or with no cloud), else the reason it failed: the portal's limits
    stand (they are already committed) and the next sync puts OpenStack right.
    """
    ctx = cloud.context()
    if ctx is None:
        return None
    try:
        sync_tenants_to_cloud(ctx, [tenant], actor)
        db.session.commit()
    except PortalError as exc:
        db.session.rollback()
        log.warning("quota sync of %s to OpenStack failed: %s", tenant.slug, exc)
        return str(exc)
    return None

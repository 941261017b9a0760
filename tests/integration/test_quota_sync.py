"""Limits edited by a platform admin reach the tenant's Nova quotas in the sandbox cloud."""
from __future__ import annotations

from typing import Any

import pytest

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.extensions import db
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.cloud_sync import project_name, sync_tenants_to_cloud
from cloud_portal.tenants.service import get_tenant_by_slug
from tests.helpers import create_user, sign_in

pytestmark = pytest.mark.integration


def _nova_quota(conn: Any, project: str) -> Any:
    project_id = conn.identity.find_project(project, ignore_missing=False).id
    return conn.compute.get_quota_set(project_id)


def test_edited_limits_are_set_on_nova(cloud_app: Any, sandbox_cloud: Any) -> None:
    admin = create_user("platform_admin", "platform", email="quota-admin@cwmwl.example")
    tenant = get_tenant_by_slug("blaenau-gwent")
    original = quotas.limits_for_tenant(tenant.id)
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    conn = sandbox_cloud.connect()
    new = {**original.tenant, "instances": 33, "vcpus": 77, "ram_mib": 150_000}
    try:
        quotas.set_limits(admin, tenant, new, dict(original.per_user))
        result = sync_tenants_to_cloud(ctx, [tenant], admin)
        db.session.commit()
        assert result.ok
        quota = _nova_quota(conn, project_name(tenant))
        assert (quota.instances, quota.cores, quota.ram) == (33, 77, 150_000)
    finally:
        quotas.set_limits(admin, tenant, dict(original.tenant), dict(original.per_user), confirm_below_usage=True)
        sync_tenants_to_cloud(ctx, [tenant], admin)
        db.session.commit()
    quota = _nova_quota(conn, project_name(tenant))
    assert (quota.instances, quota.cores, quota.ram) == (
        original.tenant["instances"], original.tenant["vcpus"], original.tenant["ram_mib"])


def test_web_edit_syncs_openstack(cloud_app: Any, sandbox_cloud: Any) -> None:
    """The admin page pushes the change to OpenStack in the same request."""
    admin = create_user("platform_admin", "platform", email="quota-admin2@cwmwl.example")
    tenant = get_tenant_by_slug("monmouthshire")
    original = quotas.limits_for_tenant(tenant.id)
    client = cloud_app.test_client()
    sign_in(client, admin.email)

    def form(limits: dict[str, Any]) -> dict[str, Any]:
        data = {f"tenant_{r}": v for r, v in limits.items()}
        data.update({f"user_{r}": "" if v is None else v for r, v in original.per_user.items()})
        return data

    conn = sandbox_cloud.connect()
    try:
        response = client.post("/admin/quotas/monmouthshire", data=form({**original.tenant, "vcpus": 99}),
                               follow_redirects=True)
        assert "OpenStack was not updated" not in response.get_data(as_text=True)
        assert _nova_quota(conn, project_name(tenant)).cores == 99
    finally:
        client.post("/admin/quotas/monmouthshire", data={**form(dict(original.tenant)), "confirm_below_usage": "y"})
    assert _nova_quota(conn, project_name(tenant)).cores == original.tenant["vcpus"]

"""The playbooks are idempotent: a second run with the same values changes nothing."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from cloud_portal.adapters.ansible import run_playbook
from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.tenants.cloud_sync import sync_tenants_to_cloud

pytestmark = pytest.mark.integration


def _changed(result: Any) -> list[str]:
    return [e.task for e in result.events if e.status == "changed"]


def test_create_and_delete_twice(cloud_app: Any, sandbox_cloud: Any) -> None:
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    name = f"idem-{uuid.uuid4().hex[:8]}"
    security_group = ctx.cloud.default_security_group_id(ctx.cloud.find_project_id("cwmwl-torfaen"))
    variables = {"security_group": security_group,"project_name": "cwmwl-torfaen", "server_name": name, "image": "debian-12", "flavor": "cc.small",
                 "network": "shared-net", "availability_zone": "local-government",
                 "metadata": {"portal_request_id": f"request-{name}"}}

    def run(playbook: str, values: dict[str, Any], tag: str) -> Any:
        result = run_playbook(playbook, values, job_id=f"{name}-{tag}", data_root=ctx.runs_dir,
                              clouds_yaml=ctx.clouds_yaml, cloud_name=ctx.cloud_name, timeout_s=180)
        assert result.ok, result.failure_message
        return result

    first = run("create_server.yml", variables, "create1")
    assert _changed(first) == ["Boot server"]
    server_id = first.result_of("Boot server")["server"]["id"]
    ctx.cloud.wait_for_status(server_id, {"ACTIVE"}, timeout_s=120)
    assert _changed(run("create_server.yml", variables, "create2")) == []
    servers = [s for s in sandbox_cloud.connect().compute.servers(all_projects=True) if s.name == name]
    assert len(servers) == 1
    stop = {"project_name": "cwmwl-torfaen", "server_id": server_id, "action": "stop"}
    assert _changed(run("server_action.yml", stop, "stop1")) == ["Stop server"]
    ctx.cloud.wait_for_status(server_id, {"SHUTOFF"}, timeout_s=120)
    assert _changed(run("server_action.yml", stop, "stop2")) == []
    delete = {**stop, "action": "delete"}
    assert _changed(run("server_action.yml", delete, "delete1")) == ["Delete server"]
    ctx.cloud.wait_for_deleted(server_id, timeout_s=120)
    assert _changed(run("server_action.yml", delete, "delete2")) == []


def test_sync_tenants_twice_changes_nothing(cloud_app: Any) -> None:
    from cloud_portal.tenants.service import list_tenants
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    tenants = list_tenants(include_platform=False)
    sync_tenants_to_cloud(ctx, tenants)  # whatever earlier tests left, now in step
    again = sync_tenants_to_cloud(ctx, tenants)
    assert _changed(again) == []

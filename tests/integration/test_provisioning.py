"""Provisioning end to end against the sandbox cloud: web → service → ansible-runner → Nova."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.quotas.models import QuotaReservation
from cloud_portal.quotas.service import usage_for_tenant
from tests.helpers import sign_in

pytestmark = pytest.mark.integration


def _project_servers(sandbox_cloud: Any, slug: str) -> dict[str, Any]:
    conn = sandbox_cloud.connect()
    project = conn.identity.find_project(f"cwmwl-{slug}")
    return {s.id: s for s in conn.compute.servers(details=True, all_projects=True, project_id=project.id)}


def _server_row(name: str) -> m.Server:
    db.session.expire_all()
    server = db.session.scalar(select(m.Server).where(m.Server.name == name))
    assert server is not None, f"no server row for {name}"
    return server


def test_web_request_to_active_then_lifecycle(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                             unique_name: Any) -> None:
    member = make_user("member", "torfaen")
    client = cloud_app.test_client()
    sign_in(client, member.email)
    name = unique_name("web")
    response = client.post("/requests/new/vm", data={"name": name, "catalog_key": "small", "image_key": "debian-12",
                                                     "data_hall": "local-government"})
    assert response.status_code == 302, response.get_data(as_text=True)
    request_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "active" in request_page and "Boot server" in request_page

    server = _server_row(name)
    assert server.status == "ACTIVE" and server.fixed_ip
    live = _project_servers(sandbox_cloud, "torfaen")[server.openstack_id]
    assert live.status == "ACTIVE" and live.metadata["portal_request_id"] == f"request-{server.request.uid}"
    assert live.availability_zone == "local-government"
    conn = sandbox_cloud.connect()
    ports = list(conn.network.ports(device_id=server.openstack_id))
    assert len(ports) == 1 and ports[0].fixed_ips

    for action, expected in (("stop", "SHUTOFF"), ("start", "ACTIVE")):
        assert client.post(f"/servers/{server.id}/{action}").status_code == 302
        assert _server_row(name).status == expected
        assert conn.compute.get_server(server.openstack_id).status == expected

    assert client.post(f"/servers/{server.id}/resize", data={"size": "medium"}).status_code == 302
    resized = _server_row(name)
    assert resized.flavor == "cc.medium" and resized.vcpus == 2 and resized.problem is None, resized.problem
    live = conn.compute.get_server(server.openstack_id)
    assert live.flavor["original_name"] == "cc.medium" and live.status == "ACTIVE"
    assert usage_for_tenant(member.tenant_id)["vcpus"] == 2  # the hold moved to the new size

    assert client.post(f"/servers/{server.id}/delete").status_code == 302
    assert _server_row(name).status == "DELETED"
    assert conn.compute.find_server(server.openstack_id, all_projects=True) is None
    assert list(conn.network.ports(device_id=server.openstack_id)) == []
    assert usage_for_tenant(member.tenant_id)["instances"] == 0


def test_api_desktop_request_and_actions(cloud_app: Any, make_user: Any, sandbox_cloud: Any, unique_name: Any) -> None:
    member = make_user("member", "nhs-wales")
    token = create_api_token(None, member, "tests")
    db.session.commit()
    api = cloud_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    name = unique_name("desk")
    created = api.post("/api/v1/requests", json={"kind": "desktop", "size": "office-linux", "data_hall": "nhs",
                                                 "name": name}, headers=headers)
    assert created.status_code == 201, created.get_json()
    body = api.get(created.headers["Location"], headers=headers).get_json()
    assert body["state"] == "active", body
    assert [s["task"] for s in body["steps"] if s["status"] in ("ok", "changed")] == [
        "Boot desktop", "Wait for the server to be running"]
    server = api.get(f"/api/v1/servers/{body['server_id']}", headers=headers).get_json()
    live = sandbox_cloud.connect().compute.get_server(server["openstack_id"])
    assert live.metadata["desktop_user"] == member.email and live.availability_zone == "nhs"
    stopped = api.post(f"/api/v1/servers/{server['id']}/actions", json={"action": "stop"}, headers=headers)
    assert stopped.status_code == 202
    assert api.get(f"/api/v1/servers/{server['id']}", headers=headers).get_json()["status"] == "SHUTOFF"
    bad = api.post(f"/api/v1/servers/{server['id']}/actions", json={"action": "stop"}, headers=headers)
    assert bad.status_code == 400 and "cannot be asked to stop" in bad.get_json()["error"]
    deleted = api.post(f"/api/v1/servers/{server['id']}/actions", json={"action": "delete"}, headers=headers)
    assert deleted.status_code == 202
    assert api.get(f"/api/v1/servers/{server['id']}", headers=headers).get_json()["status"] == "DELETED"


def test_approval_path(cloud_app: Any, make_user: Any, unique_name: Any) -> None:
    member = make_user("member", "blaenau-gwent")
    colleague = make_user("member", "blaenau-gwent")
    admin = make_user("tenant_admin", "blaenau-gwent")
    names = [unique_name("big"), unique_name("big")]
    for person, name in zip((member, colleague), names, strict=True):  # 8 vCPUs is over Blaenau Gwent's threshold of 4
        client = cloud_app.test_client()
        sign_in(client, person.email)
        client.post("/requests/new/vm", data={"name": name, "catalog_key": "xlarge", "image_key": "rocky-9",
                                              "data_hall": "local-government"})
    waiting = list(db.session.scalars(select(m.ServerRequest).order_by(m.ServerRequest.id)))
    assert [r.state for r in waiting] == ["pending_approval", "pending_approval"]
    assert usage_for_tenant(member.tenant_id)["vcpus"] == 16  # held while waiting
    client = cloud_app.test_client()
    sign_in(client, admin.email)
    assert names[0] in client.get("/approvals").get_data(as_text=True)
    client.post(f"/requests/{waiting[0].id}/approve")
    client.post(f"/requests/{waiting[1].id}/reject", data={"reason": "Use a large size instead, please."})
    db.session.expire_all()
    assert db.session.get(m.ServerRequest, waiting[0].id).state == "active"
    rejected = db.session.get(m.ServerRequest, waiting[1].id)
    assert rejected.state == "rejected" and rejected.reason == "Use a large size instead, please."
    assert usage_for_tenant(member.tenant_id)["vcpus"] == 8
    client.post("/sign-out")
    sign_in(client, colleague.email)
    assert "Use a large size instead, please." in client.get(f"/requests/{waiting[1].id}").get_data(as_text=True)
    client.post("/sign-out")
    sign_in(client, member.email)
    server = _server_row(names[0])
    client.post(f"/servers/{server.id}/delete")
    assert _server_row(names[0]).status == "DELETED"


HOSTILE_NAMES = [
    ("{{ lookup('pipe','touch MARKER') }}", "only the letters a-z"),
    ("{% raw %}x{% endraw %}", "only the letters a-z"),
    ("$(touch MARKER)", "only the letters a-z"),
    ("; rm -rf / ; touch MARKER", "only the letters a-z"),
    ("a" * 64, "the most is 63"),
    ("wеb-01", "only the letters a-z"),  # Cyrillic е
    ("web０1", "only the letters a-z"),  # fullwidth zero
    ("", "Enter a name"),
    ("web\x0001", "only the letters a-z"),
    ("-web", "may not start or end with a hyphen"),
]


@pytest.mark.parametrize("name,message", HOSTILE_NAMES)
def test_hostile_names_refused_before_anything(cloud_app: Any, make_user: Any, tmp_path: Path, name: str,
                                               message: str) -> None:
    member = make_user("member", "torfaen")
    token = create_api_token(None, member, "t")
    db.session.commit()
    name = name.replace("MARKER", str(tmp_path / "MARKER"))
    response = cloud_app.test_client().post(
        "/api/v1/requests", json={"kind": "vm", "size": "small", "image": "debian-12",
                                  "data_hall": "local-government", "name": name},
        headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    web = cloud_app.test_client()
    sign_in(web, member.email)
    page = web.post("/requests/new/vm", data={"name": name, "catalog_key": "small", "image_key": "debian-12",
                                              "data_hall": "local-government"})
    assert page.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(m.ServerRequest)) == 0
    assert db.session.scalar(select(func.count()).select_from(m.Job)) == 0
    assert db.session.scalar(select(func.count()).select_from(QuotaReservation)) == 0
    assert not (tmp_path / "MARKER").exists()


def test_data_hall_not_allowed_is_refused(cloud_app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    client = cloud_app.test_client()
    sign_in(client, member.email)
    page = client.post("/requests/new/vm", data={"name": "evidence-store", "catalog_key": "small",
                                                 "image_key": "debian-12", "data_hall": "police"})
    assert page.status_code == 400
    assert re.search(r"may not place servers in the (&#39;|')police(&#39;|') data hall", page.get_data(as_text=True))
    assert db.session.scalar(select(func.count()).select_from(m.ServerRequest)) == 0


def test_image_larger_than_flavor_is_refused(cloud_app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    token = create_api_token(None, member, "t")
    db.session.commit()
    from cloud_portal.catalog.models import Image
    db.session.add(Image(key="oversized", name="Oversized test image", os_image="oversized-test",
                         min_disk_gb=10, kind="vm", active=True))  # the portal thinks it fits; Glance knows better
    db.session.commit()
    response = cloud_app.test_client().post(
        "/api/v1/requests", json={"kind": "vm", "size": "small", "image": "oversized", "data_hall": "local-government",
                                  "name": "too-big"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert "needs a disk of at least 200 GB" in response.get_json()["error"]
    assert db.session.scalar(select(func.count()).select_from(m.ServerRequest)) == 0

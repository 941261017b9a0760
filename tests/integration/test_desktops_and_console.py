"""Desktops for named people and the console, against the sandbox cloud: a tenant admin orders a
desktop for a member, who sees and runs it while a colleague cannot; the console address comes
from the real Nova (its noVNC proxy on loopback, with a token Nova accepts), for the owner and
their tenant admin only, and every address handed out is audit-logged. The tests never follow the
address into a VNC session: the fake virt driver's VNC host is not a real machine."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.audit.models import AuditEvent
from cloud_portal.billing.models import UsageInterval
from cloud_portal.extensions import db
from cloud_portal.quotas.service import usage_for_user
from tests.helpers import sign_in
from tests.integration.test_console_sandbox import _nova_token_check, _token_of

pytestmark = pytest.mark.integration


def test_desktop_for_a_member_is_theirs_and_its_console_opens(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                                             unique_name: Any) -> None:
    admin = make_user("tenant_admin", "nhs-wales")
    ann = make_user("member", "nhs-wales")
    colleague = make_user("member", "nhs-wales")
    headers = {person.email: {"Authorization": f"Bearer {create_api_token(None, person, 'tests')}"}
               for person in (admin, ann, colleague)}
    db.session.commit()
    api = cloud_app.test_client()
    as_admin, as_ann, as_colleague = headers[admin.email], headers[ann.email], headers[colleague.email]

    name = unique_name("desk")
    created = api.post("/api/v1/requests", json={"kind": "desktop", "size": "office-linux", "data_hall": "nhs",
                                                 "name": name, "for": ann.email}, headers=as_admin)
    assert created.status_code == 201, created.get_json()
    order = api.get(created.headers["Location"], headers=as_ann).get_json()
    assert order["state"] == "active" and order["for"] == ann.email and order["requester"] == admin.email, order
    server_id = order["server_id"]
    server = api.get(f"/api/v1/servers/{server_id}", headers=as_ann).get_json()
    assert server["owner"] == ann.email
    live = sandbox_cloud.connect().compute.get_server(server["openstack_id"])
    assert live.metadata["desktop_user"] == ann.email and live.metadata["portal_owner"] == ann.email
    assert usage_for_user(ann.id)["desktops"] == 1 and usage_for_user(admin.id)["desktops"] == 0

    # Ann's desktop list has it; her colleague can neither see nor touch it.
    mine = api.get("/api/v1/servers", headers=as_ann).get_json()["items"]
    assert [s["id"] for s in mine] == [server_id]
    assert api.get("/api/v1/servers", headers=as_colleague).get_json()["items"] == []
    assert api.get(f"/api/v1/servers/{server_id}", headers=as_colleague).status_code == 404
    poke = api.post(f"/api/v1/servers/{server_id}/actions", json={"action": "stop"}, headers=as_colleague)
    assert poke.status_code == 404
    assert api.post(f"/api/v1/servers/{server_id}/console", headers=as_colleague).status_code == 404

    # Ann runs it: stopped, there is no console; started again, there is.
    assert api.post(f"/api/v1/servers/{server_id}/actions", json={"action": "stop"}, headers=as_ann).status_code == 202
    stopped = api.post(f"/api/v1/servers/{server_id}/console", headers=as_ann)
    assert stopped.status_code == 400 and "start it first" in stopped.get_json()["error"]
    assert api.post(f"/api/v1/servers/{server_id}/actions", json={"action": "start"}, headers=as_ann).status_code == 202
    assert api.get(f"/api/v1/servers/{server_id}", headers=as_ann).get_json()["status"] == "ACTIVE"

    proxy = urllib.parse.urlsplit(sandbox_cloud.novncproxy_base_url)
    urls = []
    for who in (as_ann, as_admin):
        answer = api.post(f"/api/v1/servers/{server_id}/console", headers=who)
        assert answer.status_code == 200, answer.get_json()
        urls.append(answer.get_json()["url"])
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
            proxy.scheme, "127.0.0.1", proxy.port, proxy.path), url
        checked = _nova_token_check(sandbox_cloud.connect(), _token_of(url))
        assert checked.status_code == 200, checked.text
        assert checked.json()["console"]["instance_uuid"] == server["openstack_id"]
    assert _token_of(urls[0]) != _token_of(urls[1])  # a fresh address each time
    assert _nova_token_check(sandbox_cloud.connect(), "0" * 36).status_code == 404

    # The page: a POST button (the address is a secret made on demand), then off to the proxy.
    client = cloud_app.test_client()
    sign_in(client, ann.email)
    page = client.get(f"/servers/{server_id}").get_data(as_text=True)
    assert 'id="console-form"' in page
    assert client.get(f"/servers/{server_id}/console").status_code == 405
    opened = client.post(f"/servers/{server_id}/console")
    assert opened.status_code == 302 and opened.headers["Location"].startswith(sandbox_cloud.novncproxy_base_url)

    events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "server.console",
                                                              AuditEvent.target_id == str(server_id))))
    assert sorted(e.actor_label for e in events) == sorted([ann.email, admin.email, ann.email])
    for event in events:  # who asked is kept; the token that opens the console never is
        assert all(_token_of(url) not in repr(event.after) for url in urls)

    # Ann leaves; her desktop goes to her colleague: the hold, the charges and Nova's metadata move.
    given = api.post(f"/api/v1/servers/{server_id}/transfer", json={"to": colleague.email}, headers=as_admin)
    assert given.status_code == 200 and given.get_json()["owner"] == colleague.email, given.get_json()
    live = sandbox_cloud.connect().compute.get_server(server["openstack_id"])
    assert live.metadata["desktop_user"] == colleague.email and live.metadata["portal_owner"] == colleague.email
    assert usage_for_user(ann.id)["desktops"] == 0 and usage_for_user(colleague.id)["desktops"] == 1
    owners = [i.owner_id for i in db.session.scalars(select(UsageInterval).where(UsageInterval.server_id == server_id)
                                                      .order_by(UsageInterval.started_at, UsageInterval.id))]
    assert owners[0] == ann.id and owners[-1] == colleague.id
    assert api.get(f"/api/v1/servers/{server_id}", headers=as_ann).status_code == 404

    assert api.post(f"/api/v1/servers/{server_id}/actions", json={"action": "delete"},
                    headers=as_colleague).status_code == 202
    assert usage_for_user(colleague.id)["desktops"] == 0

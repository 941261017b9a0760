"""A walk over every route: people of another tenant, and lesser roles of the same tenant, get
no foreign data and change nothing of it.

Every rule of the URL map (so a page added later is walked too) is called with its variables
pointing at Torfaen's objects, by a member and a tenant admin of Monmouthshire and by a Torfaen
member for the admin-only routes; web pages with the signed-in session, the API with tokens.
The response may be anything but a 500; it must not name Torfaen's people, servers or requests;
and a POST must leave Torfaen's server, request and people as they were."""
from __future__ import annotations

from typing import Any

import pytest

from cloud_portal.accounts.models import User
from cloud_portal.accounts.service import create_api_token
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from tests.helpers import rule_paths, server_seen_active, signed_in_client, utc

#: Routes whose answer is the same for everyone (no tenant data), not walked for foreign data.
PUBLIC = {"/sign-in", "/language", "/healthz", "/metrics", "/static/<path:filename>", "/api/v1/openapi.json",
          "/api/v1/docs", "/sign-in/sso/<slug>", "/sign-in/sso/<slug>/callback"}


@pytest.fixture
def torfaen(app: Any, make_user: Any) -> dict[str, Any]:
    owner = make_user("member", "torfaen")
    owner.display_name = "Gwenllian Secret-Owner"
    admin = make_user("tenant_admin", "torfaen")
    server = server_seen_active(owner, "secret-torfaen-web", utc("2026-11-03T09:00:00"))
    db.session.commit()
    return {"owner": owner, "admin": admin, "server": server, "request_id": server.request_id,
            "secrets": [b"secret-torfaen-web", b"Gwenllian Secret-Owner", owner.email.encode()]}


def _state(torfaen: dict[str, Any]) -> tuple[Any, ...]:
    db.session.expire_all()
    server = db.session.get(m.Server, torfaen["server"].id)
    request = db.session.get(m.ServerRequest, torfaen["request_id"])
    owner = db.session.get(User, torfaen["owner"].id)
    return (server.status, server.task, server.owner_id, server.flavor, request.state, owner.role, owner.active,
            owner.password_hash, owner.display_name)


def _paths(rule: Any, torfaen: dict[str, Any]) -> list[str]:
    return rule_paths(rule, server_id=torfaen["server"].id, request_id=torfaen["request_id"],
                      user_id=torfaen["owner"].id)


def test_no_route_shows_or_changes_another_tenants_data(app: Any, make_user: Any, torfaen: dict[str, Any]) -> None:
    outsiders = {"monmouthshire member": make_user("member", "monmouthshire"),
                 "monmouthshire tenant admin": make_user("tenant_admin", "monmouthshire")}
    lesser = {"torfaen member (admin routes)": make_user("member", "torfaen")}
    tokens = {label: create_api_token(None, user, "walk") for label, user in {**outsiders, **lesser}.items()}
    db.session.commit()
    web = {label: signed_in_client(app, user.email) for label, user in {**outsiders, **lesser}.items()}
    before = _state(torfaen)
    walked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC or rule.endpoint == "static":
            continue
        admin_only = any(part in rule.rule for part in ("/admin", "/approve", "/reject", "/finance", "/audit",
                                                        "/quota-increases/", "/quotas/usage", "billing/months"))
        people = {**outsiders, **(lesser if admin_only else {})}
        for path in _paths(rule, torfaen):
            for method in sorted((rule.methods or set()) & {"GET", "POST", "PUT", "PATCH", "DELETE"}):
                for label in people:
                    if path.startswith("/api/"):
                        response = app.test_client().open(path, method=method, json={},
                                                          headers={"Authorization": f"Bearer {tokens[label]}"})
                    else:
                        response = web[label].open(path, method=method, data={})
                    walked += 1
                    assert response.status_code < 500, (label, method, path, response.data[:300])
                    body = response.get_data()
                    for secret in torfaen["secrets"]:
                        assert secret not in body, (label, method, path, secret)
                    if method != "GET":
                        db.session.rollback()
                        assert _state(torfaen) == before, (label, method, path)
    assert walked > 100
    # The walk would see foreign data: Torfaen's own admin gets it on the same pages.
    own = signed_in_client(app, torfaen["admin"].email)
    assert b"secret-torfaen-web" in own.get("/servers?scope=tenant").data
    assert b"Gwenllian Secret-Owner" in own.get("/admin/users").data


def test_numbers_too_big_for_the_database_are_refused_not_crashed_on(app: Any, make_user: Any) -> None:
    """Found by the closed-lines walk on PostgreSQL (INTEGER is 32-bit there): ids and amounts
    beyond the columns reached the driver and gave 500s."""
    from tests.helpers import signed_in_client
    member = make_user("member", "torfaen")
    client = signed_in_client(app, member.email)
    huge = str(2**63)
    assert client.get(f"/servers/{huge}").status_code == 404
    assert client.get(f"/servers/{2**31}").status_code == 404
    assert client.post(f"/requests/{2**31}/cancel").status_code == 404
    assert client.post("/account/tokens", data={"revoke": huge}).status_code == 200
    asked = client.post("/quotas/increase/new", data={"vcpus": huge, "reason": "a lot"})
    assert asked.status_code == 400 and b"from 0 to 10,000,000" in asked.data
    token = create_api_token(None, member, "big")
    db.session.commit()
    api = app.test_client().post("/api/v1/quota-increases", json={"vcpus": 2**40, "reason": "a lot"},
                                 headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 400
    assert app.test_client().get(f"/api/v1/servers/{huge}",
                                 headers={"Authorization": f"Bearer {token}"}).status_code == 404

"""Leavers and transfers: a tenant admin gives a server to another person of the tenant (refused,
with the reason, when that person's own limits have no room); the quota hold and the charges
move at that moment. Disabling a person who still owns servers leads to a page listing them, and
until they are given away or deleted the tenant's pages say the owner has left."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from cloud_portal.accounts.service import create_api_token, set_active
from cloud_portal.audit.models import AuditEvent
from cloud_portal.billing.models import UsageInterval
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted, QuotaExceeded
from cloud_portal.extensions import db
from cloud_portal.provisioning import servers
from cloud_portal.quotas.models import SCOPE_PER_USER, QuotaLimit
from cloud_portal.quotas.service import recount_usage, usage_for_tenant, usage_for_user
from cloud_portal.timeutil import frozen_at
from tests.helpers import server_seen_active, sign_in, utc


def _per_user_limit(tenant_id: int, resource: str, limit: int) -> None:
    db.session.execute(delete(QuotaLimit).where(QuotaLimit.tenant_id == tenant_id, QuotaLimit.scope == SCOPE_PER_USER,
                                                QuotaLimit.resource == resource))
    db.session.add(QuotaLimit(tenant_id=tenant_id, scope=SCOPE_PER_USER, resource=resource, limit=limit))
    db.session.commit()


def test_a_transfer_moves_the_hold_and_splits_the_charges(make_user: Any) -> None:
    admin, bryn, alys = (make_user("tenant_admin", "torfaen"), make_user("member", "torfaen"),
                         make_user("member", "torfaen"))
    server = server_seen_active(bryn, "bee", utc("2026-11-01T00:00:00"), size="large")
    tenant_before = usage_for_tenant(bryn.tenant_id)
    with frozen_at(utc("2026-11-10T00:00:00")):
        moved = servers.transfer_server(admin, server.id, f"  {alys.email.upper()} ")
    assert moved.owner_id == alys.id
    assert moved.task is None  # no cloud here: nothing to write into Nova's metadata, so not busy
    assert usage_for_user(bryn.id)["vcpus"] == 0 and usage_for_user(alys.id)["vcpus"] == server.vcpus
    assert usage_for_tenant(bryn.tenant_id) == tenant_before  # the tenant holds what it held
    assert recount_usage() == []
    # The ledger: Bryn until the 10th, Alys from then on.
    spans = [(i.owner_id, i.started_at, i.ended_at) for i in db.session.scalars(
        select(UsageInterval).where(UsageInterval.server_id == server.id).order_by(UsageInterval.started_at))]
    assert spans == [(bryn.id, utc("2026-11-01T00:00:00"), utc("2026-11-10T00:00:00")),
                     (alys.id, utc("2026-11-10T00:00:00"), None)]
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "server.transfer"))
    assert event.before == {"owner": bryn.email} and event.after == {"owner": alys.email}


def test_transfers_are_refused_with_the_reason(make_user: Any) -> None:
    admin, bryn, alys = (make_user("tenant_admin", "torfaen"), make_user("member", "torfaen"),
                         make_user("member", "torfaen"))
    other_admin, finance = make_user("tenant_admin", "nhs-wales"), make_user("finance", "platform")
    outsider = make_user("member", "nhs-wales")
    server = server_seen_active(bryn, "bee", utc("2026-11-01T00:00:00"), size="large")
    _per_user_limit(bryn.tenant_id, "vcpus", server.vcpus - 1)
    with pytest.raises(QuotaExceeded, match=f"{alys.email} has {server.vcpus - 1} of {server.vcpus - 1} vCPUs left"):
        servers.transfer_server(admin, server.id, alys.email)
    with pytest.raises(NotPermitted, match="Only the organisation's administrators"):
        servers.transfer_server(bryn, server.id, alys.email)
    with pytest.raises(NotFound):
        servers.transfer_server(other_admin, server.id, outsider.email)
    with pytest.raises(NotFound):
        servers.transfer_server(finance, server.id, alys.email)
    with pytest.raises(InvalidInput, match="belongs to Torfaen"):
        servers.transfer_server(admin, server.id, outsider.email)
    with pytest.raises(InvalidInput, match="already owns bee"):
        servers.transfer_server(admin, server.id, bryn.email)
    db.session.rollback()
    db.session.expire_all()
    assert db.session.get(type(server), server.id).owner_id == bryn.id
    assert usage_for_user(bryn.id)["vcpus"] == server.vcpus and usage_for_user(alys.id)["vcpus"] == 0


def test_a_leaver_s_servers_are_listed_and_handed_over(make_user: Any, app: Any) -> None:
    admin, bryn, alys = (make_user("tenant_admin", "torfaen"), make_user("member", "torfaen"),
                         make_user("member", "torfaen"))
    bee = server_seen_active(bryn, "bee", utc("2026-11-01T00:00:00"))
    desk = server_seen_active(bryn, "bee-desk", utc("2026-11-01T00:00:00"), kind="desktop", size="office-linux")
    client = app.test_client()
    sign_in(client, admin.email)
    disabled = client.post(f"/admin/users/{bryn.id}/disable")
    assert disabled.status_code == 302 and disabled.headers["Location"].endswith(f"/admin/users/{bryn.id}/servers")
    page = client.get(f"/admin/users/{bryn.id}/servers").get_data(as_text=True)
    assert "has left, but these still run" in page and "bee-desk" in page and ">bee<" in page
    assert "1 servers to hand over" not in client.get("/admin/users").get_data(as_text=True)
    assert "2 servers to hand over" in client.get("/admin/users").get_data(as_text=True)
    # Until then the tenant's pages say the owner has left.
    assert "owner has left" in client.get("/servers?scope=tenant").get_data(as_text=True)
    assert "owner has left" in client.get(f"/servers/{bee.id}").get_data(as_text=True)

    given = client.post(f"/servers/{bee.id}/transfer", data={"to_email": alys.email, "leaver": bryn.id})
    assert given.status_code == 302 and given.headers["Location"].endswith(f"/admin/users/{bryn.id}/servers")
    refused = client.post(f"/servers/{desk.id}/transfer", data={"to_email": "nobody@example.cymru", "leaver": bryn.id},
                          follow_redirects=True)
    assert "No one with the address nobody@example.cymru belongs to Torfaen" in refused.get_data(as_text=True)
    page = client.get(f"/admin/users/{bryn.id}/servers").get_data(as_text=True)
    assert ">bee<" not in page and "bee-desk" in page
    db.session.expire_all()
    assert db.session.get(type(bee), bee.id).owner_id == alys.id
    assert usage_for_user(alys.id)["instances"] == 1 and usage_for_user(bryn.id)["instances"] == 1

    # The API does the same for scripts; a member's token may not.
    token = create_api_token(None, admin, "script")
    alys_token = create_api_token(None, alys, "script")
    db.session.commit()
    api = app.test_client()
    answer = api.post(f"/api/v1/servers/{desk.id}/transfer", json={"to": alys.email},
                      headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.get_json()["owner"] == alys.email
    back = api.post(f"/api/v1/servers/{desk.id}/transfer", json={"to": admin.email},
                    headers={"Authorization": f"Bearer {alys_token}"})
    assert back.status_code == 403
    assert "Nothing left" in client.get(f"/admin/users/{bryn.id}/servers").get_data(as_text=True)
    assert "servers to hand over" not in client.get("/admin/users").get_data(as_text=True)
    set_active(None, bryn, True)
    db.session.commit()

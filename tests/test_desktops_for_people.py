"""A tenant admin orders a desktop for a named member of staff: it is theirs (their per-person
quota, their request list, their server), and nobody else of the tenant below admin sees it."""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from cloud_portal.accounts.service import create_api_token, set_active
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.quotas.models import SCOPE_PER_USER, QuotaLimit, QuotaReservation
from cloud_portal.quotas.service import usage_for_user
from tests.helpers import create_user, sign_in
from tests.test_requests import queued_app  # noqa: F401  (fixture: a queue nothing consumes, no cloud)

DESKTOP = {"name": "desk-ann", "catalog_key": "office-windows", "data_hall": "local-government"}


def test_tenant_admin_orders_a_desktop_for_a_member(queued_app: Any) -> None:  # noqa: F811
    admin = create_user("tenant_admin", "torfaen")
    ann = create_user("member", "torfaen")
    colleague = create_user("member", "torfaen")
    client = queued_app.test_client()
    sign_in(client, admin.email)
    form = client.get("/requests/new/desktop").get_data(as_text=True)
    assert 'name="for_email"' in form
    response = client.post("/requests/new/desktop", data={**DESKTOP, "for_email": ann.email.upper()})
    assert response.status_code == 302, response.get_data(as_text=True)
    order = db.session.scalar(select(m.ServerRequest))
    assert (order.requester_id, order.owner_id, order.kind) == (admin.id, ann.id, "desktop")
    # Ann's per-person quota holds it, not the admin's; the audit log says who did it.
    hold = db.session.get(QuotaReservation, order.reservation_id)
    assert hold.user_id == ann.id
    assert usage_for_user(ann.id)["desktops"] == 1 and usage_for_user(admin.id)["desktops"] == 0
    page = client.get(f"/requests/{order.id}").get_data(as_text=True)
    assert f"For Test member ({ann.email}), ordered by {admin.email}." in page

    # Ann sees it among her requests and can open it; a colleague cannot.
    as_ann = queued_app.test_client()
    sign_in(as_ann, ann.email)
    assert "desk-ann" in as_ann.get("/requests").get_data(as_text=True)
    assert as_ann.get(f"/requests/{order.id}").status_code == 200
    colleague_token = create_api_token(None, colleague, "script")
    db.session.commit()
    as_colleague = {"Authorization": f"Bearer {colleague_token}"}
    client = queued_app.test_client()
    assert client.get(f"/api/v1/requests/{order.id}", headers=as_colleague).status_code == 404
    assert client.get("/api/v1/requests", headers=as_colleague).get_json()["items"] == []


def test_members_cannot_order_for_others_and_bad_names_are_refused(queued_app: Any) -> None:  # noqa: F811
    admin = create_user("tenant_admin", "torfaen")
    member = create_user("member", "torfaen")
    outsider = create_user("member", "nhs-wales")
    gone = create_user("member", "torfaen")
    set_active(None, gone, False)
    db.session.commit()
    client = queued_app.test_client()
    payload = {"kind": "desktop", "size": "office-windows", "data_hall": "local-government", "name": "desk"}

    member_token = create_api_token(None, member, "script")
    admin_token = create_api_token(None, admin, "script")
    db.session.commit()
    as_member = {"Authorization": f"Bearer {member_token}"}
    as_admin = {"Authorization": f"Bearer {admin_token}"}
    refused = client.post("/api/v1/requests", json={**payload, "for": admin.email}, headers=as_member)
    assert refused.status_code == 403 and "Only a tenant administrator" in refused.get_json()["error"]
    for email, words in ((outsider.email, "belongs to Torfaen"), (gone.email, "is disabled"),
                         ("nobody@example.cymru", "No one with the address nobody@example.cymru")):
        answer = client.post("/api/v1/requests", json={**payload, "for": email}, headers=as_admin)
        assert answer.status_code == 400 and words in answer.get_json()["error"], answer.get_json()
    assert db.session.scalar(select(m.ServerRequest)) is None

    ordered = client.post("/api/v1/requests", json={**payload, "for": member.email}, headers=as_admin)
    assert ordered.status_code == 201 and ordered.get_json()["for"] == member.email
    assert ordered.get_json()["requester"] == admin.email
    # A member ordering for themselves by their own address is just an ordinary order.
    own = client.post("/api/v1/requests", json={**payload, "name": "own", "for": member.email}, headers=as_member)
    assert own.status_code == 201 and own.get_json()["for"] == member.email


def test_the_person_s_own_limit_decides_and_the_refusal_names_them(queued_app: Any) -> None:  # noqa: F811
    admin = create_user("tenant_admin", "torfaen")
    ann = create_user("member", "torfaen")
    db.session.execute(delete(QuotaLimit).where(QuotaLimit.tenant_id == ann.tenant_id,
                                                QuotaLimit.scope == SCOPE_PER_USER, QuotaLimit.resource == "desktops"))
    db.session.add(QuotaLimit(tenant_id=ann.tenant_id, scope=SCOPE_PER_USER, resource="desktops", limit=1))
    db.session.commit()
    client = queued_app.test_client()
    sign_in(client, admin.email)
    assert client.post("/requests/new/desktop", data={**DESKTOP, "for_email": ann.email}).status_code == 302
    again = client.post("/requests/new/desktop", data={**DESKTOP, "name": "desk-two", "for_email": ann.email})
    assert again.status_code == 400  # the form again, with the reason
    assert f"{ann.email} has 0 of 1 desktops left" in again.get_data(as_text=True)
    # The admin's own allowance is untouched: they can still order one for themselves.
    assert client.post("/requests/new/desktop", data={**DESKTOP, "name": "desk-admin"}).status_code == 302

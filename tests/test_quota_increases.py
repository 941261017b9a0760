"""Quota-increase requests: asked from a blocked request form, approved (limits raised) or declined
with a reason the requester sees in the portal and by e-mail (a local SMTP server), and the API."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.audit.models import AuditEvent
from cloud_portal.extensions import db
from cloud_portal.quotas import service as quotas
from cloud_portal.quotas.models import QuotaIncreaseRequest
from cloud_portal.tenants.service import get_tenant_by_slug
from tests.helpers import create_user, free_port, signed_in_client


class Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def mail_app(make_app: Callable[..., Any], smtp: tuple[Inbox, int]) -> Iterator[Any]:
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_FROM="portal@cwmwl.example")
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        yield app


def _fill_tenant(tenant_slug: str, admin: Any, instances: int) -> None:
    """Set the tenant's instance limit to ``instances`` and the per-person one out of the way."""
    tenant = get_tenant_by_slug(tenant_slug)
    limits = quotas.limits_for_tenant(tenant.id)
    quotas.set_limits(admin, tenant, {**limits.tenant, "instances": instances},
                      {**limits.per_user, "instances": None})


def test_blocked_form_offers_prefilled_increase_and_approval_raises(mail_app: Any, smtp: Any) -> None:
    inbox, _ = smtp
    admin = create_user("platform_admin", "platform", email="admin@cwmwl.example")
    member = create_user("member", "torfaen", email="alys@torfaen.example")
    _fill_tenant("torfaen", admin, 0)
    member_client = signed_in_client(mail_app, member.email)
    form = member_client.get("/requests/new/vm").get_data(as_text=True)
    assert "Ask for more" in form and "/quotas/increase/new?instances=1" in form
    page = member_client.get("/quotas/increase/new?instances=1&vcpus=2").get_data(as_text=True)
    assert 'name="instances" type="number" value="1"' in page and 'value="2"' in page
    sent = member_client.post("/quotas/increase/new", data={"instances": "3", "reason": "Election count servers"})
    assert sent.status_code == 302
    increase = db.session.scalar(select(QuotaIncreaseRequest))
    assert increase.wanted() == {"instances": 3} and increase.state == "open"
    assert "Waiting for a platform administrator" in member_client.get("/quotas/increases").get_data(as_text=True)

    admin_client = signed_in_client(mail_app, admin.email)
    queue = admin_client.get("/admin/quotas/increases").get_data(as_text=True)
    assert "Election count servers" in queue
    assert member_client.post(f"/admin/quotas/increases/{increase.id}/approve", data={}).status_code == 403
    assert admin_client.post(f"/admin/quotas/increases/{increase.id}/approve",
                             data={"reason": "Fine for May"}).status_code == 302
    db.session.expire_all()
    torfaen = get_tenant_by_slug("torfaen")
    assert quotas.limits_for_tenant(torfaen.id).tenant["instances"] == 3
    assert db.session.get(QuotaIncreaseRequest, increase.id).state == "approved"
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "quota.increase_approve"))
    message = inbox.wait()[0]
    assert message["To"] == member.email and "approved" in message["Subject"]
    assert "Fine for May" in message.get_payload()
    # Deciding twice is refused.
    again = admin_client.post(f"/admin/quotas/increases/{increase.id}/decline", data={"reason": "no"}, follow_redirects=True)
    assert "already approved" in again.get_data(as_text=True)


def test_decline_with_reason_reaches_the_requester(mail_app: Any, smtp: Any) -> None:
    inbox, _ = smtp
    admin = create_user("platform_admin", "platform", email="admin@cwmwl.example")
    member = create_user("member", "monmouthshire", email="bryn@mon.example")
    increase = quotas.create_increase(member, {"vcpus": 64}, "Data warehouse")
    db.session.commit()
    admin_client = signed_in_client(mail_app, admin.email)
    # A reason is required to decline.
    admin_client.post(f"/admin/quotas/increases/{increase.id}/decline", data={"reason": ""})
    db.session.expire_all()
    assert db.session.get(QuotaIncreaseRequest, increase.id).state == "open"
    admin_client.post(f"/admin/quotas/increases/{increase.id}/decline",
                      data={"reason": "The education hall is full until March"})
    db.session.expire_all()
    assert db.session.get(QuotaIncreaseRequest, increase.id).state == "declined"
    mine = signed_in_client(mail_app, member.email).get("/quotas/increases").get_data(as_text=True)
    assert "Declined" in mine and "The education hall is full until March" in mine
    message = inbox.wait()[0]
    assert message["To"] == member.email and "declined" in message["Subject"]
    assert "The education hall is full until March" in message.get_payload()
    assert message["From"] == "portal@cwmwl.example"


def test_mail_failure_keeps_the_decision(make_app: Callable[..., Any]) -> None:
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=free_port())  # nothing listens there
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        admin = create_user("platform_admin", "platform", email="admin@cwmwl.example")
        member = create_user("member", "torfaen", email="alys@torfaen.example")
        increase = quotas.create_increase(member, {"desktops": 5}, "Contact centre")
        db.session.commit()
        response = signed_in_client(app, admin.email).post(f"/admin/quotas/increases/{increase.id}/decline",
                                                    data={"reason": "Use the pool"})
        assert response.status_code == 302
        db.session.expire_all()
        assert db.session.get(QuotaIncreaseRequest, increase.id).state == "declined"


def test_quota_api(mail_app: Any, smtp: Any) -> None:
    inbox, _ = smtp
    admin = create_user("platform_admin", "platform", email="admin@cwmwl.example")
    member = create_user("member", "torfaen", email="alys@torfaen.example")
    tenant_admin = create_user("tenant_admin", "torfaen", email="ta@torfaen.example")
    other_admin = create_user("tenant_admin", "gwent-police", email="ta@police.example")
    tokens = {u.email: create_api_token(None, u, "t") for u in (admin, member, tenant_admin, other_admin)}
    db.session.commit()
    client = mail_app.test_client()

    def call(method: str, url: str, who: Any, **kw: Any) -> Any:
        return client.open(url, method=method, headers={"Authorization": f"Bearer {tokens[who.email]}"}, **kw)

    usage = call("GET", "/api/v1/quotas/usage", tenant_admin)
    assert usage.status_code == 200
    assert usage.get_json()["resources"]["vcpus"] == {"tenant_limit": 160, "per_user_limit": 16, "used": 0}
    assert call("GET", "/api/v1/quotas/usage", member).status_code == 403
    assert call("GET", "/api/v1/quotas/usage?tenant=torfaen", other_admin).status_code == 403
    assert call("GET", "/api/v1/quotas/usage?tenant=gwent-police", admin).get_json()["tenant"] == "gwent-police"
    assert call("GET", "/api/v1/quotas/usage?tenant=nope", admin).status_code == 404

    bad = call("POST", "/api/v1/quota-increases", member, json={"reason": "more"})
    assert bad.status_code == 400 and "at least one" in bad.get_json()["error"]
    made = call("POST", "/api/v1/quota-increases", member, json={"vcpus": 40, "reason": "Planning system"})
    assert made.status_code == 201 and made.get_json()["state"] == "open"
    first = made.get_json()["id"]
    second = call("POST", "/api/v1/quota-increases", member, json={"ram_mib": 1024, "reason": "More"}).get_json()["id"]
    assert [i["id"] for i in call("GET", "/api/v1/quota-increases", member).get_json()["items"]] == [second, first]
    assert call("GET", "/api/v1/quota-increases?scope=open", member).status_code == 403
    assert call("GET", "/api/v1/quota-increases?scope=open", admin).get_json()["total"] == 2
    assert call("POST", f"/api/v1/quota-increases/{first}/approve", member).status_code == 403

    approved = call("POST", f"/api/v1/quota-increases/{first}/approve", admin)
    assert approved.status_code == 200 and approved.get_json()["state"] == "approved"
    assert approved.get_json()["cloud_sync_error"] is None
    assert call("GET", "/api/v1/quotas/usage", tenant_admin).get_json()["resources"]["vcpus"]["tenant_limit"] == 200
    refused = call("POST", f"/api/v1/quota-increases/{second}/decline", admin, json={})
    assert refused.status_code == 400
    declined = call("POST", f"/api/v1/quota-increases/{second}/decline", admin, json={"reason": "Use swap"})
    assert declined.get_json()["decision_reason"] == "Use swap"
    assert len(inbox.wait(2)) == 2
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/quota-increases" in doc["paths"] and "/api/v1/quotas/usage" in doc["paths"]


def test_openstack_quota_refusal_becomes_a_finding(make_app: Callable[..., Any]) -> None:
    """OpenStack refusing a create as over quota: a plain-words failure, released quota, a finding."""
    from types import SimpleNamespace

    from cloud_portal.provisioning import models as m
    from cloud_portal.provisioning import provision, requests
    from cloud_portal.provisioning.leases import latest_job
    from cloud_portal.unit_of_work import discard_pending
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="")
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        member = create_user("member", "torfaen", email="alys@torfaen.example")
        order = requests.submit_request(member, kind="vm", catalog_key="small", image_key="debian-12",
                                        data_hall="local-government", name="web-1")
        db.session.commit()
        discard_pending()  # the job is driven by hand below
        job = latest_job(request_id=order.id)
        ctx = SimpleNamespace(cloud=SimpleNamespace(find_project_id=lambda name: None))
        state = provision._provision_trouble(order, job, ctx, "Quota exceeded for instances: Requested 1, but "  # type: ignore[arg-type]
                                             "already used 10 of 10 instances", transient=False, final_attempt=True)
        assert state == m.FAILED and "OpenStack quota is used up" in order.reason
        finding = db.session.scalar(select(m.ReconcileFinding))
        assert finding.kind == "quota_refused" and finding.tenant_id == member.tenant_id
        assert "web-1" in finding.detail
        assert quotas.usage_for_tenant(member.tenant_id)["instances"] == 0

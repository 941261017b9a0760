"""Platform admins edit quota limits: validation, confirmation below usage, audit, permissions."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import InvalidInput, NotPermitted
from cloud_portal.extensions import db
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.service import get_tenant_by_slug
from tests.conftest import PASSWORD

TENANT = {"instances": 60, "vcpus": 160, "ram_mib": 327680, "disk_gb": 6000, "desktops": 40}
PER_USER = {"instances": 6, "vcpus": 16, "ram_mib": None, "disk_gb": None, "desktops": 2}


def _form(tenant: dict[str, Any], per_user: dict[str, Any], **extra: Any) -> dict[str, Any]:
    data = {f"tenant_{r}": v for r, v in tenant.items()}
    data.update({f"user_{r}": "" if v is None else v for r, v in per_user.items()})
    data.update(extra)
    return data


def test_set_limits_validates_and_audits(make_user: Callable[..., Any]) -> None:
    admin = make_user("platform_admin", "platform")
    torfaen = get_tenant_by_slug("torfaen")
    with pytest.raises(InvalidInput, match="whole number"):
        quotas.set_limits(admin, torfaen, {**TENANT, "vcpus": -1}, PER_USER)
    with pytest.raises(InvalidInput, match="cannot be more than the tenant's limit"):
        quotas.set_limits(admin, torfaen, {**TENANT, "vcpus": 8}, {**PER_USER, "vcpus": 16})
    quotas.set_limits(admin, torfaen, {**TENANT, "vcpus": 200}, {**PER_USER, "desktops": None})
    limits = quotas.limits_for_tenant(torfaen.id)
    assert limits.tenant["vcpus"] == 200 and limits.per_user["desktops"] is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "quota.set_limits"))
    assert event.actor_label == admin.email
    assert event.before["tenant"]["vcpus"] == 160 and event.after["tenant"]["vcpus"] == 200
    assert event.before["per_user"]["desktops"] == 2 and event.after["per_user"]["desktops"] is None


def test_lowering_below_usage_needs_confirmation(make_user: Callable[..., Any]) -> None:
    admin = make_user("platform_admin", "platform")
    member = make_user("member", "torfaen")
    torfaen = get_tenant_by_slug("torfaen")
    quotas.reserve(torfaen, member, instances=1, vcpus=12, purpose="test:1")
    with pytest.raises(quotas.LimitsBelowUsage) as refused:
        quotas.set_limits(admin, torfaen, {**TENANT, "vcpus": 8}, {**PER_USER, "vcpus": 8})
    assert ("Torfaen County Borough Council uses 12 vCPUs; the new limit 8 is below that."
            in refused.value.problems)
    assert ("The new limit for each person of 8 vCPUs is below what 1 of Torfaen County Borough Council's "
            "people use (the most is 12)." in refused.value.problems)
    assert quotas.limits_for_tenant(torfaen.id).tenant["vcpus"] == 160  # nothing written
    quotas.set_limits(admin, torfaen, {**TENANT, "vcpus": 8}, {**PER_USER, "vcpus": 8}, confirm_below_usage=True)
    assert quotas.limits_for_tenant(torfaen.id).tenant["vcpus"] == 8


def test_only_platform_admins_may_edit(make_user: Callable[..., Any], client: Any, auth: Any) -> None:
    torfaen = get_tenant_by_slug("torfaen")
    for role in ("member", "tenant_admin"):
        user = make_user(role, "torfaen")
        with pytest.raises(NotPermitted):
            quotas.set_limits(user, torfaen, TENANT, PER_USER)
        auth.sign_in(user.email, PASSWORD)
        assert client.get("/admin/quotas").status_code == 403
        assert client.post("/admin/quotas/torfaen", data=_form(TENANT, PER_USER)).status_code == 403
        auth.sign_out()
    finance = make_user("finance", "platform")
    auth.sign_in(finance.email, PASSWORD)
    assert client.get("/admin/quotas/torfaen").status_code == 403


def test_admin_pages(make_user: Callable[..., Any], client: Any, auth: Any, count_queries: Any) -> None:
    admin = make_user("platform_admin", "platform")
    member = make_user("member", "torfaen")
    torfaen = get_tenant_by_slug("torfaen")
    quotas.reserve(torfaen, member, instances=1, vcpus=12, purpose="test:1")
    auth.sign_in(admin.email, PASSWORD)
    with count_queries() as counter:
        page = client.get("/admin/quotas?sort=vcpus&dir=desc")
    assert page.status_code == 200 and counter.count < 12
    html = page.get_data(as_text=True)
    assert "<meter" in html and "12 of 160" in html
    assert html.index("Torfaen") < html.index("Monmouthshire")  # most vCPUs in use first
    assert client.get("/admin/quotas?sort=nonsense").status_code == 404
    form = client.get("/admin/quotas/torfaen").get_data(as_text=True)
    assert 'value="160"' in form and "tenants sync" in form
    # Lowering below usage: the page says what is over and asks for confirmation.
    refused = client.post("/admin/quotas/torfaen", data=_form({**TENANT, "vcpus": 8}, {**PER_USER, "vcpus": 8}))
    assert refused.status_code == 409
    assert "uses 12 vCPUs; the new limit 8 is below that." in refused.get_data(as_text=True)
    assert quotas.limits_for_tenant(torfaen.id).tenant["vcpus"] == 160
    done = client.post("/admin/quotas/torfaen", data=_form({**TENANT, "vcpus": 8}, {**PER_USER, "vcpus": 8},
                                                              confirm_below_usage="y"))
    assert done.status_code == 302
    assert quotas.limits_for_tenant(torfaen.id).tenant["vcpus"] == 8
    # Per-person limits may be blank (no limit); tenant limits may not.
    client.post("/admin/quotas/torfaen", data=_form(TENANT, dict.fromkeys(PER_USER)))
    db.session.expire_all()
    assert quotas.limits_for_tenant(torfaen.id).per_user == dict.fromkeys(PER_USER)
    assert client.post("/admin/quotas/torfaen", data=_form({**TENANT, "vcpus": ""}, PER_USER)).status_code == 400
    assert client.get("/admin/quotas/platform").status_code == 404


def test_home_pages_show_usage_bars(make_user: Callable[..., Any], client: Any, auth: Any,
                                    count_queries: Any) -> None:
    member = make_user("member", "torfaen")
    torfaen = get_tenant_by_slug("torfaen")
    quotas.reserve(torfaen, member, instances=1, vcpus=4, purpose="test:1")
    auth.sign_in(member.email, PASSWORD)
    with count_queries() as counter:
        html = client.get("/").get_data(as_text=True)
    assert "<meter" in html and "4 of 160" in html and "4 of 16" in html
    assert counter.count < 15


def test_openstack_quota_refusal_is_recognised() -> None:
    from cloud_portal.provisioning.plain_words import is_quota_refusal, plain_words
    technical = "Quota exceeded for cores: Requested 4, but already used 160 of 160 cores"
    assert is_quota_refusal(technical) and "OpenStack quota is used up" in plain_words(technical)
    assert not is_quota_refusal("No valid host was found.")

"""Each role's allowed and forbidden pages, and who may manage whom."""
from __future__ import annotations

from typing import Any

import pytest

from cloud_portal.audit.models import AuditEvent
from cloud_portal.extensions import db

PAGES = ["/", "/admin/users", "/admin/audit", "/finance/"]
ALLOWED = {
    "member": {"/"},
    "tenant_admin": {"/", "/admin/users", "/admin/audit"},
    "platform_admin": {"/", "/admin/users", "/admin/audit", "/finance/"},
    "finance": {"/", "/finance/"},
}
TENANT_OF = {"member": "torfaen", "tenant_admin": "torfaen", "platform_admin": "platform", "finance": "platform"}


@pytest.mark.parametrize("role", list(ALLOWED))
def test_role_pages(client: Any, auth: Any, make_user: Any, role: str) -> None:
    user = make_user(role, TENANT_OF[role])
    auth.sign_in(user.email)
    for page in PAGES:
        status = client.get(page).status_code
        expected = 200 if page in ALLOWED[role] else 403
        assert status == expected, f"{role} {page}: {status}"


def test_anonymous_is_sent_to_sign_in(client: Any, synced: None) -> None:
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    assert client.get("/sign-in").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_home_pages_show_real_data(client: Any, auth: Any, make_user: Any) -> None:
    member = make_user("member", "gwent-police")
    auth.sign_in(member.email)
    page = client.get("/").get_data(as_text=True)
    assert "Gwent Police" in page and "Police hall" in page and "GP-ICT-0900" in page
    assert "£30.00 a user a month" in page and "cc.medium" in page
    assert "Local government hall" not in page  # only the tenant's own halls
    auth.sign_out()
    admin = make_user("platform_admin", "platform")
    auth.sign_in(admin.email)
    page = client.get("/").get_data(as_text=True)
    for name in ("Torfaen County Borough Council", "Monmouthshire County Council", "NHS Wales",
                 "Swansea University", "Blaenau Gwent County Borough Council"):
        assert name in page


def test_tenant_admin_manages_only_own_tenant(client: Any, auth: Any, make_user: Any) -> None:
    admin = make_user("tenant_admin", "torfaen")
    colleague = make_user("member", "torfaen")
    outsider = make_user("member", "nhs-wales")
    auth.sign_in(admin.email)
    listing = client.get("/admin/users").get_data(as_text=True)
    assert colleague.email in listing and outsider.email not in listing
    # Another tenant's people are invisible: 404, and nothing changes.
    assert client.post(f"/admin/users/{outsider.id}/disable").status_code == 404
    assert client.post(f"/admin/users/{outsider.id}/role", data={f"u{outsider.id}-role": "tenant_admin"}
                       ).status_code == 404
    db.session.refresh(outsider)
    assert outsider.active and outsider.role == "member"
    # Own tenant: disable, enable, promote.
    assert client.post(f"/admin/users/{colleague.id}/disable").status_code == 302
    db.session.refresh(colleague)
    assert not colleague.active
    client.post(f"/admin/users/{colleague.id}/enable")
    client.post(f"/admin/users/{colleague.id}/role", data={f"u{colleague.id}-role": "tenant_admin"})
    db.session.refresh(colleague)
    assert colleague.active and colleague.role == "tenant_admin"
    # A tenant admin cannot hand out platform roles.
    client.post(f"/admin/users/{colleague.id}/role", data={f"u{colleague.id}-role": "platform_admin"})
    db.session.refresh(colleague)
    assert colleague.role == "tenant_admin"
    actions = [e.action for e in db.session.query(AuditEvent).filter(AuditEvent.target_id == colleague.email)]
    assert {"user.disable", "user.enable", "user.set_role"} <= set(actions)


def test_tenant_admin_adds_a_person_in_own_tenant_only(client: Any, auth: Any, make_user: Any) -> None:
    from cloud_portal.accounts.models import User
    from cloud_portal.tenants.service import get_tenant_by_slug
    admin = make_user("tenant_admin", "monmouthshire")
    auth.sign_in(admin.email)
    own = get_tenant_by_slug("monmouthshire")
    other = get_tenant_by_slug("torfaen")
    response = client.post("/admin/users", data={"email": "New.Person@Monmouthshire.gov.uk",
                                                 "display_name": "New Person", "tenant": own.id,
                                                 "role": "member"}, follow_redirects=True)
    assert b"it is not shown again" in response.data
    added = db.session.query(User).filter_by(email="new.person@monmouthshire.gov.uk").one()
    assert added.tenant_id == own.id
    refused = client.post("/admin/users", data={"email": "x@torfaen.gov.uk", "display_name": "X",
                                                "tenant": other.id, "role": "member"})
    assert refused.status_code == 400
    assert db.session.query(User).filter_by(email="x@torfaen.gov.uk").count() == 0
    duplicate = client.post("/admin/users", data={"email": "new.person@monmouthshire.gov.uk",
                                                  "display_name": "Again", "tenant": own.id, "role": "member"})
    assert duplicate.status_code == 400 and b"already exists" in duplicate.data


def test_admin_cannot_disable_self(client: Any, auth: Any, make_user: Any) -> None:
    admin = make_user("platform_admin", "platform")
    auth.sign_in(admin.email)
    response = client.post(f"/admin/users/{admin.id}/disable", follow_redirects=True)
    assert b"cannot disable your own account" in response.data
    db.session.refresh(admin)
    assert admin.active


def test_audit_log_visibility(client: Any, auth: Any, make_user: Any) -> None:
    torfaen_admin = make_user("tenant_admin", "torfaen")
    make_user("member", "nhs-wales", email="nurse@nhs.wales")
    make_user("member", "torfaen", email="clerk@torfaen.gov.uk")
    auth.sign_in(torfaen_admin.email)
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "clerk@torfaen.gov.uk" in page and "nurse@nhs.wales" not in page
    auth.sign_out()
    platform = make_user("platform_admin", "platform")
    auth.sign_in(platform.email)
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "clerk@torfaen.gov.uk" in page and "nurse@nhs.wales" in page


def test_people_page_query_count_does_not_grow_with_people(client: Any, auth: Any, make_user: Any,
                                                           count_queries: Any) -> None:
    admin = make_user("platform_admin", "platform")
    auth.sign_in(admin.email)
    with count_queries() as few:
        client.get("/admin/users")
    for i in range(15):
        make_user("member", ["torfaen", "nhs-wales", "gwent-police"][i % 3])
    with count_queries() as many:
        client.get("/admin/users")
    assert many.count <= few.count + 1, (few.count, many.count)


def test_new_passwords_never_travel_in_the_session_cookie(app: Any, client: Any, auth: Any, make_user: Any) -> None:
    """A new or reset password is shown on the response itself (not cached), never put in a flash
    message, which Flask keeps in the signed but readable session cookie."""
    from cloud_portal.accounts.models import User
    from cloud_portal.tenants.service import get_tenant_by_slug
    admin = make_user("tenant_admin", "monmouthshire")
    auth.sign_in(admin.email)
    serializer = app.session_interface.get_signing_serializer(app)

    def cookie_text() -> str:
        cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
        return str(serializer.loads(cookie.value)) if cookie else ""

    added = client.post("/admin/users", data={"email": "shown.once@monmouthshire.gov.uk", "display_name": "Shown Once",
                                              "tenant": get_tenant_by_slug("monmouthshire").id, "role": "member"})
    assert added.status_code == 200 and added.headers["Cache-Control"] == "no-store"
    password = added.get_data(as_text=True).split('<code class="secret">')[1].split("</code>")[0]
    person = db.session.query(User).filter_by(email="shown.once@monmouthshire.gov.uk").one()
    assert person.check_password(password) and password not in cookie_text()
    reset = client.post(f"/admin/users/{person.id}/reset-password")
    new_password = reset.get_data(as_text=True).split('<code class="secret">')[1].split("</code>")[0]
    db.session.refresh(person)
    assert person.check_password(new_password) and new_password not in cookie_text()
    assert new_password not in client.get("/admin/users").get_data(as_text=True)  # shown once only

"""Signing in and out, throttling, session invalidation, CSRF and cookie flags."""
from __future__ import annotations

import re
from typing import Any

import pytest

from cloud_portal.accounts import service as accounts
from cloud_portal.extensions import db
from tests.helpers import sign_in


def test_sign_in_and_out(client: Any, auth: Any, make_user: Any) -> None:
    user = make_user("member")
    assert client.get("/").status_code == 302
    response = auth.sign_in(user.email)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and b"Torfaen County Borough Council" in home.data
    auth.sign_out()
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_without_saying_which_part(client: Any, auth: Any, make_user: Any) -> None:
    user = make_user("member")
    response = auth.sign_in(user.email, "not the password")
    assert response.status_code == 401
    assert b"e-mail address or password is not right" in response.data
    assert auth.sign_in("nobody@example.cymru").status_code == 401


def test_email_is_case_insensitive(client: Any, auth: Any, make_user: Any) -> None:
    user = make_user("member")
    assert auth.sign_in(user.email.upper()).status_code == 302


def test_sign_in_throttled_after_repeated_failures(make_app: Any, make_user: Any) -> None:
    app = make_app(SIGNIN_MAX_FAILURES=3, SIGNIN_WINDOW_SECONDS=600)
    user = make_user("member")
    client = app.test_client()
    for _ in range(3):
        assert sign_in(client, user.email, "wrong").status_code == 401
    blocked = sign_in(client, user.email)
    assert blocked.status_code == 429
    assert b"Too many failed sign-in attempts. Wait 10 minutes" in blocked.data
    # Another account is not blocked by someone else's failures.
    other = make_user("member")
    assert sign_in(client, other.email).status_code == 302


def test_throttle_window_passes(make_app: Any, make_user: Any) -> None:
    from datetime import timedelta

    from cloud_portal.accounts.models import SignInAttempt
    app = make_app(SIGNIN_MAX_FAILURES=2)
    user = make_user("member")
    client = app.test_client()
    for _ in range(2):
        sign_in(client, user.email, "wrong")
    assert sign_in(client, user.email).status_code == 429
    for attempt in db.session.query(SignInAttempt):
        attempt.at = attempt.at - timedelta(hours=1)
    db.session.commit()
    assert sign_in(client, user.email).status_code == 302


def test_disabling_ends_existing_sessions(client: Any, auth: Any, make_user: Any) -> None:
    user = make_user("member")
    auth.sign_in(user.email)
    assert client.get("/").status_code == 200
    accounts.set_active(None, user, False)
    db.session.commit()
    assert client.get("/").status_code == 302
    assert auth.sign_in(user.email).status_code == 401


def test_role_change_ends_existing_sessions(client: Any, auth: Any, make_user: Any) -> None:
    user = make_user("member")
    auth.sign_in(user.email)
    accounts.set_role(None, user, "tenant_admin")
    db.session.commit()
    assert client.get("/").status_code == 302


def test_no_open_redirect_after_sign_in(client: Any, auth: Any, make_user: Any) -> None:
    user = make_user("member")
    response = auth.sign_in(user.email, next="https://evil.example/")
    assert response.headers["Location"] == "/"
    client.post("/sign-out")
    response = auth.sign_in(user.email, next="/admin/users")
    assert response.headers["Location"] == "/admin/users"


def _csrf_token(html: bytes) -> str:
    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(rb'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1).decode()


def test_csrf_rejects_forms_without_a_valid_token(make_app: Any, make_user: Any) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    user = make_user("tenant_admin")
    client = app.test_client()
    # Without a token the sign-in form is refused and nobody is signed in.
    refused = sign_in(client, user.email)
    assert refused.status_code == 400
    assert client.get("/").status_code == 302
    token = _csrf_token(client.get("/sign-in").data)
    assert sign_in(client, user.email, csrf_token=token).status_code == 302
    # Signed in, a state-changing admin form with a forged token is refused with a clear page.
    victim = make_user("member")
    forged = client.post(f"/admin/users/{victim.id}/disable", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert b"did not come from this site" in forged.data
    db.session.refresh(victim)
    assert victim.active
    page_token = _csrf_token(client.get("/admin/users").data)
    assert client.post(f"/admin/users/{victim.id}/disable", data={"csrf_token": page_token}).status_code == 302
    db.session.refresh(victim)
    assert not victim.active


@pytest.mark.parametrize("env,secure", [("production", True), ("development", False)])
def test_session_cookie_flags(make_app: Any, make_user: Any, env: str, secure: bool) -> None:
    app = make_app(ENV=env, SECRET_KEY="k" * 48)
    user = make_user("member")
    response = sign_in(app.test_client(), user.email)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_security_headers(client: Any) -> None:
    response = client.get("/sign-in")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_a_failed_sign_in_takes_as_long_whether_or_not_the_address_has_an_account(app: Any, make_user: Any) -> None:
    """No account enumeration by timing: an unknown address is refused only after a password
    hash as costly as a real one (without it the refusal is ~100 times faster)."""
    import statistics
    import time

    from cloud_portal.accounts.service import authenticate
    user = make_user("member", "torfaen")

    def timed(email: str, n: int) -> float:
        samples = []
        for i in range(5):
            t0 = time.perf_counter()
            assert authenticate(email, "not the password", f"10.0.{n}.{i}", max_failures=100, window_seconds=60) is None
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    timed("warm.up@example.cymru", 9)
    known, unknown = timed(user.email, 1), timed("nobody.here@example.cymru", 2)
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_signing_out_ends_the_session_on_the_server(app: Any, make_user: Any) -> None:
    """A copied session cookie stops working the moment its owner signs out."""
    from tests.helpers import signed_in_client
    user = make_user("member", "torfaen")
    owner = signed_in_client(app, user.email)
    assert owner.get("/").status_code == 200
    cookie = owner.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie.value)
    assert thief.get("/").status_code == 200  # the copy works while the owner is signed in
    assert owner.post("/sign-out").status_code == 302
    assert thief.get("/").status_code == 302  # ... and not after


def test_the_token_page_shows_the_header_to_send_in_both_languages(app: Any, make_user: Any) -> None:
    from tests.helpers import signed_in_client
    client = signed_in_client(app, make_user("member", "torfaen").email)
    assert b"Authorization: Bearer &lt;token&gt;" in client.get("/account/tokens").data
    client.post("/language", data={"lang": "cy", "next": "/"})
    assert b"Authorization: Bearer &lt;token&gt;" in client.get("/account/tokens").data


def test_people_of_an_organisation_that_left_lose_access_but_their_servers_stay(app: Any, make_user: Any) -> None:
    from cloud_portal.accounts.service import create_api_token
    from cloud_portal.errors import OrganisationInactive
    from cloud_portal.extensions import db
    from cloud_portal.provisioning.requests import submit_request
    from tests.helpers import PASSWORD, server_seen_active, sign_in, signed_in_client, utc
    member = make_user("member", "torfaen")
    admin = make_user("platform_admin", "platform")
    server = server_seen_active(member, "kept-after-leaving", utc("2026-11-02T09:00:00"))
    token = create_api_token(None, member, "script")
    db.session.commit()
    session = signed_in_client(app, member.email)
    assert session.get("/").status_code == 200
    member.tenant.active = False  # as `tenants sync` does when the tenant leaves tenants.yaml
    db.session.commit()

    assert session.get("/").status_code == 302  # the open session ends
    refused = sign_in(app.test_client(), member.email, PASSWORD)
    assert refused.status_code == 403 and b"no longer a member of the Cwmwl Cymru portal" in refused.data
    api = app.test_client().get("/api/v1/servers", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 403 and api.get_json()["code"] == "organisation_inactive"
    with pytest.raises(OrganisationInactive):
        submit_request(member, kind="vm", catalog_key="small", image_key="debian-12", data_hall="local-government",
                       name="after-leaving")
    db.session.rollback()
    # Platform admins still see what the organisation left behind.
    listing = signed_in_client(app, admin.email).get("/servers?scope=all")
    assert listing.status_code == 200 and server.name.encode() in listing.data

"""Two-factor sign-in (TOTP): required for platform admins and finance, optional for others,
with recovery codes; a code works once; wrong codes are throttled like passwords."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyotp
import pytest

from cloud_portal.accounts import two_factor
from cloud_portal.accounts.models import User
from cloud_portal.extensions import db
from cloud_portal.timeutil import frozen_at
from tests.helpers import PASSWORD, create_user, utc

NOW = utc("2027-02-01T09:00:00")


@pytest.fixture
def strict_app(make_app: Any) -> Any:
    app = make_app(TWO_FACTOR_ROLES="platform_admin,finance")
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        yield app


def _sign_in(client: Any, email: str) -> Any:
    return client.post("/sign-in", data={"email": email, "password": PASSWORD})


def test_finance_sets_it_up_at_first_sign_in_then_needs_a_code(strict_app: Any) -> None:
    person = create_user("finance", "platform")
    client = strict_app.test_client()
    with frozen_at(NOW):
        first = _sign_in(client, person.email)
        assert first.status_code == 302 and first.location.endswith("/sign-in/second-factor")
        assert client.get("/").status_code == 302  # not signed in yet
        setup = client.get("/sign-in/second-factor")
        assert b"Set up two-factor sign-in" in setup.data and b"<svg" in setup.data
        db.session.expire_all()
        secret = db.session.get(User, person.id).totp_secret
        assert secret and secret.encode() in setup.data
        assert client.post("/sign-in/second-factor", data={"code": "000000"}).status_code == 401
        done = client.post("/sign-in/second-factor", data={"code": pyotp.TOTP(secret).at(NOW)})
        assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
        assert client.get("/").status_code == 200  # signed in
    codes = [c.split("</code>")[0] for c in done.get_data(as_text=True).split("<li><code>")[1:]]
    assert len(codes) == 10
    later = strict_app.test_client()
    with frozen_at(NOW + timedelta(hours=2)):
        assert _sign_in(later, person.email).location.endswith("/sign-in/second-factor")
        page = later.get("/sign-in/second-factor")
        assert b"Enter your code" in page.data and b"<svg" not in page.data
        code = pyotp.TOTP(secret).at(NOW + timedelta(hours=2))
        assert later.post("/sign-in/second-factor", data={"code": code}).status_code == 302
        assert later.get("/").status_code == 200
        # The same code does not work twice.
        again = strict_app.test_client()
        _sign_in(again, person.email)
        assert again.post("/sign-in/second-factor", data={"code": code}).status_code == 401
        # A recovery code works once.
        assert again.post("/sign-in/second-factor", data={"code": codes[0]}).status_code == 302
        reuse = strict_app.test_client()
        _sign_in(reuse, person.email)
        assert reuse.post("/sign-in/second-factor", data={"code": codes[0]}).status_code == 401


def test_wrong_codes_are_throttled_like_passwords(strict_app: Any) -> None:
    admin = create_user("platform_admin", "platform")
    with frozen_at(NOW):
        two_factor.enrol_now(admin)
        db.session.commit()
        client = strict_app.test_client()
        _sign_in(client, admin.email)
        for _ in range(5):
            assert client.post("/sign-in/second-factor", data={"code": "123456"}).status_code == 401
        assert client.post("/sign-in/second-factor", data={"code": "654321"}).status_code == 429


def test_members_may_sign_in_without_it_and_a_stale_password_step_expires(strict_app: Any) -> None:
    member = create_user("member", "torfaen")
    assert _sign_in(strict_app.test_client(), member.email).location.endswith("/")
    admin = create_user("platform_admin", "platform")
    client = strict_app.test_client()
    with frozen_at(NOW):
        _sign_in(client, admin.email)
    with frozen_at(NOW + timedelta(minutes=6)):
        assert client.get("/sign-in/second-factor").location.endswith("/sign-in")
    with pytest.raises(Exception, match="cannot be turned off"):
        two_factor.turn_off(None, admin, dict(strict_app.config))


def test_a_member_may_turn_it_on_and_off_on_the_account_page(strict_app: Any) -> None:
    from tests.helpers import signed_in_client
    member = create_user("member", "torfaen")
    client = signed_in_client(strict_app, member.email)
    assert b"Two-factor sign-in is off" in client.get("/account/two-factor").data
    with frozen_at(NOW):
        started = client.post("/account/two-factor", data={"action": "start"})
        assert b"<svg" in started.data
        db.session.expire_all()
        secret = db.session.get(User, member.id).totp_secret
        assert client.post("/account/two-factor", data={"action": "confirm", "code": "111111"}).status_code == 400
        on = client.post("/account/two-factor", data={"action": "confirm", "code": pyotp.TOTP(secret).at(NOW)})
        assert on.status_code == 200 and on.data.count(b"<li><code>") == 10
    with frozen_at(NOW + timedelta(minutes=1)):
        later = strict_app.test_client()
        assert _sign_in(later, member.email).location.endswith("/sign-in/second-factor")
        assert later.post("/sign-in/second-factor",
                          data={"code": pyotp.TOTP(secret).at(NOW + timedelta(minutes=1))}).status_code == 302
        off = later.post("/account/two-factor", data={"action": "off"})
        assert b"Two-factor sign-in is off" in off.data
        assert _sign_in(strict_app.test_client(), member.email).location.endswith("/")

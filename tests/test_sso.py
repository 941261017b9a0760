"""Single sign-on against a real OpenID Connect provider (npm's oidc-provider, two issuers on
loopback, one per tenant): the whole code flow through the portal, role mapping, and every
refusal with the sentence the person sees."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import yaml
from sqlalchemy import select

from cloud_portal.accounts import sso
from cloud_portal.accounts.models import User
from cloud_portal.extensions import db
from cloud_portal.tenants.config_file import load_tenants_file
from cloud_portal.tenants.models import Tenant
from cloud_portal.tenants.service import sync_tenants
from tests.conftest import TENANTS_FILE

pytestmark = pytest.mark.oidc
BASE = "http://localhost"  # the Flask test client's address


@pytest.fixture
def sso_tenants(app: Any, synced: None, oidc_provider: Any, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> dict[str, Tenant]:
    """torfaen and monmouthshire sign in through their own issuers of the running provider."""
    doc = yaml.safe_load(TENANTS_FILE.read_text())
    for entry in doc["tenants"]:
        slug = entry["slug"]
        if slug not in ("torfaen", "monmouthshire"):
            continue
        issuer = oidc_provider.issuers[slug]
        variable = f"TEST_OIDC_SECRET_{slug.upper()}"
        monkeypatch.setenv(variable, issuer.client_secret)
        entry["sso"] = {"issuer": issuer.url, "client_id": issuer.client_id, "client_secret_env": variable,
                        "email_domains": [f"{slug}.gov.uk"],
                        "roles": {"claim": "groups", "map": {"cwmwl-admins": "tenant_admin"}, "default": "member"}}
        oidc_provider.allow_redirect(slug, f"{BASE}/sign-in/sso/{slug}/callback")
        oidc_provider.allow_post_logout_redirect(slug, f"{BASE}/sign-in")
    changed = tmp_path / "tenants.yaml"
    changed.write_text(yaml.safe_dump(doc))
    sync_tenants(load_tenants_file(changed))
    db.session.commit()
    return {t.slug: t for t in db.session.scalars(select(Tenant).where(Tenant.slug.in_(("torfaen", "monmouthshire"))))}


def _local(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _to_provider(client: Any, email: str) -> str:
    """Enter the address on the sign-in page (no password); returns the provider's authorization URL."""
    discovered = client.post("/sign-in", data={"email": email, "password": ""})
    assert discovered.status_code == 302, discovered.data[:500]
    started = client.get(_local(discovered.location))
    assert started.status_code == 302, started.data[:500]
    return str(started.location)


def _sso_sign_in(client: Any, oidc_provider: Any, email: str) -> Any:
    """The whole journey: discovery, the provider's login, back to the portal's callback."""
    back = oidc_provider.login(_to_provider(client, email), email)
    assert back.startswith(f"{BASE}/sign-in/sso/"), back
    return client.get(_local(back))


def test_a_new_council_member_signs_in_and_lands_in_their_tenant(client: Any, oidc_provider: Any,
                                                                 sso_tenants: dict[str, Tenant]) -> None:
    authorize = _to_provider(client, "new.member@torfaen.gov.uk")
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(oidc_provider.issuers["torfaen"].url)
    assert query["code_challenge_method"] == ["S256"] and query["state"] and query["nonce"]
    assert query["login_hint"] == ["new.member@torfaen.gov.uk"]
    landed = client.get(_local(oidc_provider.login(authorize, "new.member@torfaen.gov.uk")))
    assert landed.status_code == 302 and urlsplit(landed.location).path == "/"
    user = db.session.scalar(select(User).where(User.email == "new.member@torfaen.gov.uk"))
    assert user is not None and user.tenant.slug == "torfaen" and user.role == "member"
    home = client.get("/")
    assert home.status_code == 200 and user.display_name.encode() in home.data


def test_groups_at_the_provider_set_the_role_at_each_sign_in(app: Any, oidc_provider: Any,
                                                             sso_tenants: dict[str, Tenant]) -> None:
    first = app.test_client()
    _sso_sign_in(first, oidc_provider, "ceri.admin@torfaen.gov.uk")
    ceri = db.session.scalar(select(User).where(User.email == "ceri.admin@torfaen.gov.uk"))
    assert ceri.role == "tenant_admin"
    oidc_provider.set_user("torfaen", "ceri.admin@torfaen.gov.uk", groups=[])
    again = app.test_client()
    _sso_sign_in(again, oidc_provider, "ceri.admin@torfaen.gov.uk")
    db.session.refresh(ceri)
    assert ceri.role == "member"
    oidc_provider.set_user("torfaen", "ceri.admin@torfaen.gov.uk", groups=["cwmwl-admins"])


@pytest.mark.parametrize(("email", "sentence"), [
    ("someone@monmouthshire.gov.uk", b"belongs to another organisation of the portal"),
    ("unverified@torfaen.gov.uk", b"has not confirmed your e-mail address"),
])
def test_the_provider_vouches_for_an_address_the_tenant_cannot_take(
        client: Any, oidc_provider: Any, sso_tenants: dict[str, Tenant], email: str, sentence: bytes) -> None:
    # The torfaen provider knows this person, but the portal must not let them into torfaen.
    authorize = client.get(f"/sign-in/sso/torfaen?login_hint={email}").location
    refused = client.get(_local(oidc_provider.login(authorize, email)))
    assert refused.status_code == 403 and sentence in refused.data
    assert db.session.scalar(select(User).where(User.email == email)) is None
    assert client.get("/").status_code == 302  # not signed in


def test_a_reply_that_belongs_to_no_sign_in_started_here_is_refused(client: Any, oidc_provider: Any,
                                                                    sso_tenants: dict[str, Tenant]) -> None:
    back = oidc_provider.login(_to_provider(client, "new.member@torfaen.gov.uk"), "new.member@torfaen.gov.uk")
    tampered = back.replace("state=", "state=x")
    refused = client.get(_local(tampered))
    assert refused.status_code == 403 and b"could not be matched to one started here" in refused.data
    # The genuine reply used once works; used again (replayed) it is refused.
    assert client.get(_local(back)).status_code in (302, 403)
    other = client.application.test_client()
    replayed = other.get(_local(back))
    assert replayed.status_code == 403 and b"could not be matched" in replayed.data


def test_id_tokens_the_provider_did_not_mean_for_us_are_refused(app: Any, oidc_provider: Any,
                                                               sso_tenants: dict[str, Tenant]) -> None:
    torfaen = sso_tenants["torfaen"]
    issuer = oidc_provider.issuers["torfaen"]
    email = "new.member@torfaen.gov.uk"
    good = oidc_provider.mint_id_token("torfaen", client_id=issuer.client_id, email=email, nonce="n-1",
                                       expires_in=300)
    with app.test_request_context():
        assert sso.verify_id_token(torfaen, good, "n-1")["email"] == email
        cases = {
            "audience": (oidc_provider.mint_id_token("torfaen", client_id="some-other-client", email=email,
                                                     nonce="n-1", expires_in=300), "n-1"),
            "expired": (oidc_provider.mint_id_token("torfaen", client_id=issuer.client_id, email=email,
                                                    nonce="n-1", expires_in=-3600), "n-1"),
            "nonce": (good, "n-2"),  # a token replayed into another sign-in
            "signature": (oidc_provider.foreign_id_token(issuer.url, issuer.client_id, email, "n-1"), "n-1"),
            "issuer": (oidc_provider.mint_id_token("monmouthshire", client_id=issuer.client_id, email=email,
                                                   nonce="n-1", expires_in=300), "n-1"),
        }
        for reason, (token, nonce) in cases.items():
            with pytest.raises(sso.SignInProblem) as caught:
                sso.verify_id_token(torfaen, token, nonce)
            assert caught.value.reason in ({reason, "signature"} if reason == "issuer" else {reason}), \
                (reason, caught.value)


def test_the_provider_down_gets_a_plain_sentence_not_an_error_page(client: Any, oidc_provider: Any,
                                                                 sso_tenants: dict[str, Tenant]) -> None:
    oidc_provider.stop("monmouthshire")
    try:
        discovered = client.post("/sign-in", data={"email": "aled@monmouthshire.gov.uk", "password": ""})
        page = client.get(_local(discovered.location))
        assert page.status_code == 503
        assert b"sign-in service is not answering" in page.data and b"Monmouthshire" in page.data
    finally:
        oidc_provider.start("monmouthshire")
    assert _sso_sign_in(client, oidc_provider, "aled@monmouthshire.gov.uk").status_code == 302


def test_signing_out_also_ends_the_provider_session(client: Any, oidc_provider: Any,
                                                   sso_tenants: dict[str, Tenant]) -> None:
    _sso_sign_in(client, oidc_provider, "new.member@torfaen.gov.uk")
    assert client.get("/").status_code == 200
    out = client.post("/sign-out")  # (the tests' app has CSRF checks off)
    assert out.status_code == 302
    end_session = urlsplit(out.location)
    assert out.location.startswith(oidc_provider.issuers["torfaen"].url)
    query = parse_qs(end_session.query)
    assert query["post_logout_redirect_uri"] == [f"{BASE}/sign-in"] and query["id_token_hint"]
    assert client.get("/").status_code == 302  # signed out of the portal already


def test_a_rotated_signing_key_is_fetched_when_a_token_names_it(app: Any, oidc_provider: Any,
                                                              sso_tenants: dict[str, Tenant]) -> None:
    email = "aled@monmouthshire.gov.uk"
    assert _sso_sign_in(app.test_client(), oidc_provider, email).status_code == 302  # keys fetched and cached
    oidc_provider.rotate_key("monmouthshire")
    oidc_provider.allow_redirect("monmouthshire", f"{BASE}/sign-in/sso/monmouthshire/callback")
    again = _sso_sign_in(app.test_client(), oidc_provider, email)
    assert again.status_code == 302 and urlsplit(again.location).path == "/"

"""Single sign-on rules that need no provider: tenants.yaml checks, home-realm discovery, the
claims → account rules (just-in-time accounts, role mapping, refusals) and password refusal.
The flows against a real OpenID Connect provider are in test_sso.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from cloud_portal.accounts import sso
from cloud_portal.accounts.models import TENANT_ROLES, User
from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import InvalidConfig
from cloud_portal.extensions import db
from cloud_portal.tenants import config_file
from cloud_portal.tenants.config_file import load_tenants_file, parse_tenants_text
from cloud_portal.tenants.models import Tenant
from cloud_portal.tenants.service import sync_tenants
from tests.conftest import TENANTS_FILE
from tests.helpers import PASSWORD, create_user, free_port

TORFAEN_SSO = {"issuer": "http://127.0.0.1:9", "client_id": "cloud-portal-torfaen",
               "client_secret_env": "TEST_TORFAEN_OIDC_SECRET", "email_domains": ["torfaen.gov.uk"],
               "roles": {"claim": "groups", "map": {"cwmwl-admins": "tenant_admin"}, "default": "member"}}


def _doc_with(**per_tenant: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load(TENANTS_FILE.read_text())
    for tenant in doc["tenants"]:
        tenant.update(per_tenant.get(tenant["slug"], {}))
    return doc


def _problems(doc: dict[str, Any]) -> str:
    with pytest.raises(InvalidConfig) as caught:
        parse_tenants_text(yaml.safe_dump(doc), "tenants.yaml")
    return str(caught.value)


@pytest.fixture
def torfaen_sso(app: Any, synced: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    monkeypatch.setenv("TEST_TORFAEN_OIDC_SECRET", "s3cret-for-tests")
    changed = tmp_path / "tenants.yaml"
    changed.write_text(yaml.safe_dump(_doc_with(torfaen={"sso": TORFAEN_SSO, "password_sign_in": False})))
    sync_tenants(load_tenants_file(changed))
    db.session.commit()
    return db.session.scalar(select(Tenant).where(Tenant.slug == "torfaen"))


def test_the_file_says_exactly_what_is_wrong_with_a_provider() -> None:
    assert config_file.TENANT_ROLES == TENANT_ROLES
    bad = dict(TORFAEN_SSO, issuer="http://login.example.org/t", roles={"map": {"g": "platform_admin"}})
    text = _problems(_doc_with(torfaen={"sso": bad}))
    assert "tenants[0].sso.issuer: 'http://login.example.org/t' must use https" in text
    text = _problems(_doc_with(torfaen={"sso": dict(TORFAEN_SSO, roles={"map": {"g": "platform_admin"}})}))
    assert ("tenants[0].sso.roles.map.g: 'platform_admin' is not a role of a member tenant "
            "(known: member, tenant_admin)") in text
    twice = _problems(_doc_with(torfaen={"sso": TORFAEN_SSO},
                                monmouthshire={"sso": dict(TORFAEN_SSO, client_id="m")}))
    assert "tenants[1].sso.email_domains[0]: 'torfaen.gov.uk' already belongs to tenant 'torfaen'" in twice
    both = dict(TORFAEN_SSO, client_secret_file="/etc/secret")
    assert "give exactly one of client_secret_env" in _problems(_doc_with(torfaen={"sso": both}))
    assert "is not an e-mail domain in lower case" in _problems(
        _doc_with(torfaen={"sso": dict(TORFAEN_SSO, email_domains=["Torfaen.GOV.uk"])}))
    assert "tenants[0].password_sign_in: false needs an sso provider" in _problems(
        _doc_with(torfaen={"password_sign_in": False}))
    # https anywhere and http on this machine are fine.
    parse_tenants_text(yaml.safe_dump(_doc_with(torfaen={"sso": dict(TORFAEN_SSO, issuer="https://login.example.org/t/v2.0")})),
                       "tenants.yaml")


def test_home_realm_discovery_and_password_refusal(torfaen_sso: Tenant) -> None:
    assert sso.tenant_for_email("Someone@TORFAEN.gov.uk") == torfaen_sso
    assert sso.tenant_for_email("someone@monmouthshire.gov.uk") is None
    assert sso.passwords_refused_for("anyone@torfaen.gov.uk")
    assert not sso.passwords_refused_for("anyone@monmouthshire.gov.uk")
    # The platform's own staff keep their (break-glass) passwords whatever their address.
    admin = create_user("platform_admin", "platform", email="it.admin@torfaen.gov.uk")
    assert not sso.passwords_refused_for(admin.email)


def test_the_sign_in_page_sends_an_sso_domain_to_its_provider_and_refuses_its_passwords(
        client: Any, torfaen_sso: Tenant) -> None:
    create_user("member", "torfaen", email="bryn@torfaen.gov.uk")
    page = client.post("/sign-in", data={"email": "bryn@torfaen.gov.uk", "password": ""})
    assert page.status_code == 302
    assert page.location.replace("%40", "@").endswith("/sign-in/sso/torfaen?login_hint=bryn@torfaen.gov.uk")
    refused = client.post("/sign-in", data={"email": "bryn@torfaen.gov.uk", "password": PASSWORD})
    assert refused.status_code == 403 and b"leave the password empty" in refused.data
    # Another tenant's people still sign in with passwords; an empty one is asked for.
    create_user("member", "monmouthshire", email="aled@monmouthshire.gov.uk")
    assert client.post("/sign-in", data={"email": "aled@monmouthshire.gov.uk", "password": ""}).status_code == 400
    assert client.post("/sign-in", data={"email": "aled@monmouthshire.gov.uk",
                                         "password": PASSWORD}).status_code == 302


def test_a_provider_that_does_not_answer_gets_a_plain_sentence(
        client: Any, torfaen_sso: Tenant, tmp_path: Path) -> None:
    torfaen_sso.sso = dict(torfaen_sso.sso or {}, issuer=f"http://127.0.0.1:{free_port()}")  # nobody listens
    db.session.commit()
    page = client.get("/sign-in/sso/torfaen", follow_redirects=True)
    assert page.status_code == 503
    assert b"sign-in service is not answering" in page.data and b"Torfaen" in page.data


def test_a_missing_client_secret_is_said_plainly(client: Any, torfaen_sso: Tenant,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_TORFAEN_OIDC_SECRET")
    page = client.get("/sign-in/sso/torfaen")
    assert page.status_code == 503 and b"not fully set up on the portal" in page.data
    assert client.get("/sign-in/sso/monmouthshire").status_code == 503  # no provider at all


def test_claims_make_and_update_the_account(torfaen_sso: Tenant) -> None:
    claims = {"email": "New.Person@torfaen.gov.uk", "email_verified": True, "name": "Newydd Person", "groups": []}
    user = sso.account_from_claims(torfaen_sso, claims)
    db.session.commit()
    assert (user.email, user.role, user.display_name, user.tenant_id) == \
        ("new.person@torfaen.gov.uk", "member", "Newydd Person", torfaen_sso.id)
    promoted = sso.account_from_claims(torfaen_sso, {**claims, "groups": ["staff", "cwmwl-admins"], "name": "N. Person"})
    db.session.commit()
    assert promoted.id == user.id and promoted.role == "tenant_admin" and promoted.display_name == "N. Person"
    events = [(e.action, e.actor_label, e.before, e.after) for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.target_id == user.email).order_by(AuditEvent.id))]
    assert events[0][:2] == ("user.create", "single sign-on") and events[0][3]["role"] == "member"
    assert events[1] == ("user.update", "single sign-on", {"display_name": "Newydd Person", "role": "member"},
                         {"display_name": "N. Person", "role": "tenant_admin"})
    # Roles managed in the portal: the claims set the first role only.
    torfaen_sso.sso = dict(torfaen_sso.sso or {}, roles_managed_in="portal")
    db.session.commit()
    assert sso.account_from_claims(torfaen_sso, claims).role == "tenant_admin"


@pytest.mark.parametrize(("claims", "reason"), [
    ({"email": "x@torfaen.gov.uk", "email_verified": False}, "unverified_email"),
    ({"email": "someone@monmouthshire.gov.uk"}, "unknown_domain"),
    ({"name": "no address"}, "no_email"),
])
def test_claims_that_cannot_sign_anyone_in(torfaen_sso: Tenant, claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(sso.SignInProblem) as caught:
        sso.account_from_claims(torfaen_sso, claims)
    assert caught.value.reason == reason
    assert db.session.scalar(select(User).where(User.email.like("%someone%"))) is None


def test_an_address_of_another_tenants_domain_or_account_is_refused(torfaen_sso: Tenant, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MON_OIDC_SECRET", "x")
    changed = tmp_path / "two.yaml"
    changed.write_text(yaml.safe_dump(_doc_with(
        torfaen={"sso": TORFAEN_SSO},
        monmouthshire={"sso": dict(TORFAEN_SSO, client_id="m", client_secret_env="TEST_MON_OIDC_SECRET",
                                   email_domains=["monmouthshire.gov.uk"])})))
    sync_tenants(load_tenants_file(changed))
    db.session.commit()
    with pytest.raises(sso.SignInProblem) as caught:
        sso.account_from_claims(torfaen_sso, {"email": "someone@monmouthshire.gov.uk"})
    assert caught.value.reason == "other_tenant_domain"
    moved = create_user("member", "monmouthshire", email="moved@torfaen.gov.uk")
    with pytest.raises(sso.SignInProblem) as caught:
        sso.account_from_claims(torfaen_sso, {"email": moved.email})
    assert caught.value.reason == "other_tenant_account"
    gone = create_user("member", "torfaen", email="gone@torfaen.gov.uk")
    gone.active = False
    db.session.commit()
    with pytest.raises(sso.SignInProblem) as caught:
        sso.account_from_claims(torfaen_sso, {"email": gone.email})
    assert caught.value.reason == "disabled"


CHECK_FAILED = ("sign-in could not be checked, so the portal cannot let you in", "Nid oedd modd gwirio mewngofnodi")


@pytest.mark.parametrize(("reason", "english", "welsh"), [
    ("audience", *CHECK_FAILED), ("expired", *CHECK_FAILED), ("nonce", *CHECK_FAILED), ("signature", *CHECK_FAILED),
    ("state", "could not be matched to one started here", "Nid oedd modd paru'r mewngofnodi"),
    ("denied", "sign-in service did not sign you in", "Ni wnaeth gwasanaeth mewngofnodi"),
])
def test_each_refusal_of_the_provider_reply_reads_as_a_sentence(client: Any, torfaen_sso: Tenant, reason: str,
                                                                 english: str, welsh: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The page for each refusal the adapter reports (the refusals themselves are proven against
    the real provider in test_sso.py; here only their sentences, in English and Welsh)."""
    from html import unescape

    from cloud_portal.adapters import oidc

    def refuse(provider: Any) -> Any:
        raise oidc.SignInRefused(reason, "from the test")
    monkeypatch.setattr(oidc, "complete_sign_in", refuse)
    page = client.get("/sign-in/sso/torfaen/callback?code=c&state=s")
    assert page.status_code == 403 and english in unescape(page.get_data(as_text=True))
    client.post("/language", data={"lang": "cy", "next": "/sign-in"})
    in_welsh = unescape(client.get("/sign-in/sso/torfaen/callback?code=c&state=s").get_data(as_text=True))
    assert welsh in in_welsh and english not in in_welsh

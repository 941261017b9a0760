"""Single sign-on in a real browser: a council member signs in through their organisation's
provider (npm's oidc-provider on loopback) to the portal served by gunicorn, and a group change
at the provider changes their role at the next sign-in. Screenshots under
test-artifacts/screenshots/sso-*.png."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import TENANTS_FILE
from tests.e2e.accessibility import check_page
from tests.e2e.test_pages_in_chromium import SHOTS
from tests.helpers import free_port, gunicorn_command, wait_for_healthz

pytestmark = [pytest.mark.browser, pytest.mark.oidc]
EMAIL = "new.member@torfaen.gov.uk"


@pytest.fixture(scope="module")
def sso_portal(tmp_path_factory: pytest.TempPathFactory, oidc_provider: Any) -> Iterator[dict[str, Any]]:
    """gunicorn serving a portal whose torfaen tenant signs in only through its own provider."""
    instance = tmp_path_factory.mktemp("sso-browser-instance")
    issuer = oidc_provider.issuers["torfaen"]
    doc = yaml.safe_load(TENANTS_FILE.read_text())
    for entry in doc["tenants"]:
        if entry["slug"] == "torfaen":
            entry["sso"] = {"issuer": issuer.url, "client_id": issuer.client_id,
                            "client_secret_env": "TORFAEN_OIDC_CLIENT_SECRET", "email_domains": ["torfaen.gov.uk"],
                            "roles": {"map": {"cwmwl-admins": "tenant_admin"}}}
            entry["password_sign_in"] = False
    tenants = instance / "tenants.yaml"
    tenants.write_text(yaml.safe_dump(doc))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    oidc_provider.allow_redirect("torfaen", f"{base}/sign-in/sso/torfaen/callback")
    oidc_provider.allow_post_logout_redirect("torfaen", f"{base}/sign-in")
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(instance), "CLOUD_PORTAL_TENANTS_FILE": str(tenants),
           "TORFAEN_OIDC_CLIENT_SECRET": issuer.client_secret}
    env.pop("CLOUD_PORTAL_DATABASE_URL", None)
    cli = [sys.executable, "-m", "cloud_portal.cli"]
    for args in (["init"], ["check"], ["tenants", "sync"]):
        subprocess.run(cli + args, env=env, check=True, capture_output=True, timeout=120)
    server = subprocess.Popen(gunicorn_command(port, threads=1), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_healthz(base, server)
        yield {"base": base, "issuer": issuer.url}
    finally:
        server.terminate()
        server.wait(timeout=20)
        oidc_provider.set_user("torfaen", EMAIL, groups=[])


def _sign_in_through_the_provider(page: Any, portal: dict[str, Any], shot: str) -> None:
    page.goto(portal["base"] + "/sign-in")
    check_page(page, f"sso {shot} sign-in (en)")
    page.fill("input[name=email]", EMAIL)
    page.click("input[type=submit]")  # no password: the address's organisation signs in
    page.wait_for_url(portal["issuer"] + "/**")
    assert page.input_value("#email") == EMAIL  # the provider got the login hint
    page.fill("#password", "the council's own password")
    page.screenshot(path=str(SHOTS / f"sso-{shot}-provider.png"), full_page=True)
    page.click("#sign-in")
    page.wait_for_url(portal["base"] + "/")
    page.screenshot(path=str(SHOTS / f"sso-{shot}-home.png"), full_page=True)
    check_page(page, f"sso {shot} home (en)")
    page.click("button[lang=cy]")
    page.wait_for_selector("html[lang=cy]")
    page.screenshot(path=str(SHOTS / f"sso-{shot}-home-cy.png"), full_page=True)
    check_page(page, f"sso {shot} home (cy)")
    page.click("button[lang=en]")
    page.wait_for_selector("html[lang=en]")


def test_a_council_member_signs_in_through_their_organisation(sso_portal: dict[str, Any], browser: Any,
                                                             oidc_provider: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(bypass_csp=True)  # for axe's script
    try:
        _sign_in_through_the_provider(page, sso_portal, "member")
        header = page.inner_text("header")
        assert "Newydd Aelod" in page.content() and "Torfaen County Borough Council" in page.content()
        assert "People" not in header  # a member
        # Signing out ends the provider's session too (its confirmation, then back to us).
        page.click("button:has-text('Sign out')")
        page.wait_for_url(sso_portal["issuer"] + "/**")
        page.click("button:has-text('Sign out')")
        page.wait_for_url(sso_portal["base"] + "/sign-in*")

        # The council puts them in the portal admins' group: the next sign-in makes them a tenant admin.
        oidc_provider.set_user("torfaen", EMAIL, groups=["cwmwl-admins"])
        _sign_in_through_the_provider(page, sso_portal, "tenant-admin")
        assert "People" in page.inner_text("header")
    finally:
        page.close()


def test_a_password_is_refused_for_an_sso_only_organisation(sso_portal: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    try:
        page.goto(sso_portal["base"] + "/sign-in")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", "a portal password")
        page.click("input[type=submit]")
        assert "leave the password empty" in page.content()
        assert page.url.startswith(sso_portal["base"])
    finally:
        page.close()

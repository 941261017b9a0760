"""The real thing: gunicorn serving the portal, Debian chromium driven by Playwright.

Screenshots of every role's home page in English and Welsh go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, TENANTS_FILE
from tests.e2e.accessibility import check_page
from tests.helpers import free_port, gunicorn_command, wait_for_healthz

pytestmark = pytest.mark.browser
SHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A portal served by gunicorn on loopback, with tenants synced and demo accounts made."""
    instance = tmp_path_factory.mktemp("browser-instance")
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(instance),
           "CLOUD_PORTAL_TENANTS_FILE": str(TENANTS_FILE)}
    env.pop("CLOUD_PORTAL_DATABASE_URL", None)
    cli = [sys.executable, "-m", "cloud_portal.cli"]
    for args in (["init"], ["tenants", "sync"]):
        subprocess.run(cli + args, env=env, check=True, capture_output=True, timeout=120)
    made = subprocess.run(cli + ["demo-accounts"], env=env, check=True, capture_output=True, text=True,
                          timeout=120).stdout
    passwords, totp = {}, {}
    for line in made.splitlines():  # "email role password [TOTP secret: SECRET]"
        parts = line.split()
        if len(parts) >= 3 and "@" in parts[0]:
            passwords[parts[0]] = parts[2]
            if "TOTP" in line:
                totp[parts[0]] = parts[-1]
    port = free_port()
    server = subprocess.Popen(gunicorn_command(port, threads=1), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(base, server)
        yield {"base": base, "passwords": passwords, "totp": totp}
    finally:
        server.terminate()
        server.wait(timeout=20)


def _sign_in(page: Any, base: str, email: str, password: str, totp_secret: str | None = None) -> None:
    """Sign in through the form; with a TOTP secret (platform staff), also enter the app's code."""
    page.goto(base + "/sign-in")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("input[type=submit]")
    if totp_secret:
        import pyotp
        page.wait_for_url(base + "/sign-in/second-factor")
        page.fill("input[name=code]", pyotp.TOTP(totp_secret).now())
        page.click("input[type=submit]")
        page.wait_for_url(base + "/")


ROLE_ACCOUNTS = {
    "member": ("member.torfaen@demo.cwmwl.cymru", "Torfaen County Borough Council", "Cyngor Bwrdeistref Sirol Torfaen"),
    "tenant_admin": ("tenant-admin.gwent-police@demo.cwmwl.cymru", "Gwent Police", "Heddlu Gwent"),
    "platform_admin": ("platform-admin.platform@demo.cwmwl.cymru", "Member organisations", "Sefydliadau"),
    "finance": ("finance.platform@demo.cwmwl.cymru", "Member organisations", "Sefydliadau"),
}


@pytest.mark.parametrize("role", list(ROLE_ACCOUNTS))
def test_each_role_signs_in_and_sees_home_in_both_languages(portal: dict[str, Any], browser: Any,
                                                            role: str) -> None:
    email, english, welsh = ROLE_ACCOUNTS[role]
    SHOTS.mkdir(parents=True, exist_ok=True)
    # bypass_csp: axe is injected as a script of the page, which the portal's CSP rightly refuses.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        _sign_in(page, portal["base"], email, portal["passwords"][email], portal["totp"].get(email))
        page.wait_for_selector("h1")
        assert page.url.rstrip("/") == portal["base"]
        assert english in page.content()
        page.screenshot(path=str(SHOTS / f"home-{role}-en.png"), full_page=True)
        check_page(page, f"home {role} (en)")
        page.click("button[lang=cy]")
        page.wait_for_selector("html[lang=cy]")
        assert welsh in page.content() and "Allgofnodi" in page.content()
        page.screenshot(path=str(SHOTS / f"home-{role}-cy.png"), full_page=True)
        check_page(page, f"home {role} (cy)")
        page.click("text=Allgofnodi")
        page.wait_for_selector("input[name=email]")
    finally:
        context.close()


def test_wrong_password_and_sign_in_page(portal: dict[str, Any], browser: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(bypass_csp=True)
    try:
        _sign_in(page, portal["base"], "member.torfaen@demo.cwmwl.cymru", "wrong password here")
        assert page.locator(".flash.error").inner_text().startswith("The e-mail address or password is not right")
        page.screenshot(path=str(SHOTS / "sign-in-error-en.png"), full_page=True)
        check_page(page, "sign-in with an error (en)")
    finally:
        page.close()


def test_tenant_admin_disables_a_person_in_the_browser(portal: dict[str, Any], browser: Any) -> None:
    admin = "tenant-admin.torfaen@demo.cwmwl.cymru"
    page = browser.new_page(bypass_csp=True)
    try:
        _sign_in(page, portal["base"], admin, portal["passwords"][admin])
        page.goto(portal["base"] + "/admin/users")
        row = page.locator("tr", has_text="member.torfaen@demo.cwmwl.cymru")
        row.locator("button", has_text="Disable").click()
        page.wait_for_selector(".flash.success")
        assert "is disabled and has been signed out everywhere" in page.locator(".flash.success").inner_text()
        page.screenshot(path=str(SHOTS / "admin-users-en.png"), full_page=True)
        check_page(page, "people (en)")
        row = page.locator("tr", has_text="member.torfaen@demo.cwmwl.cymru")
        row.locator("button", has_text="Enable").click()
        page.wait_for_selector(".flash.success")
    finally:
        page.close()


def test_the_accessibility_check_can_fail(browser: Any) -> None:
    """axe really runs: a page with an image without a text alternative and an unlabelled field fails."""
    page = browser.new_page()
    try:
        page.set_content('<html lang="en"><head><title>t</title></head><body><main><h1>x</h1>'
                         '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><input type="text"></main></body></html>')
        with pytest.raises(AssertionError) as failed:
            check_page(page, "a page made to fail", record=False)
        assert "image-alt (critical)" in str(failed.value) and "label (critical)" in str(failed.value)
    finally:
        page.close()


def test_the_api_documentation_page_from_the_tokens_page(portal: dict[str, Any], browser: Any) -> None:
    """The API's docs page, reached from the tokens page, passes axe in both languages."""
    email = "member.torfaen@demo.cwmwl.cymru"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        _sign_in(page, portal["base"], email, portal["passwords"][email])
        page.goto(portal["base"] + "/account/tokens")
        page.click("a[href$='/api/v1/docs']")
        page.wait_for_selector("h1")
        assert "/api/v1/servers" in page.content()
        page.screenshot(path=str(SHOTS / "api-docs-en.png"), full_page=True)
        check_page(page, "API documentation (en)")
        page.click("button[lang=cy]")
        page.wait_for_selector("html[lang=cy]")
        page.screenshot(path=str(SHOTS / "api-docs-cy.png"), full_page=True)
        check_page(page, "API documentation (cy)")
    finally:
        context.close()

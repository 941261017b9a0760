"""A member orders a VM in Debian chromium and watches it being provisioned on the sandbox cloud:
gunicorn + a real queue worker + ansible-runner + Nova, nothing simulated."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.accessibility import check_page
from tests.e2e.test_pages_in_chromium import SHOTS, _sign_in
from tests.conftest import TENANTS_FILE
from tests.helpers import free_port, wait_for_healthz

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def cloud_portal(sandbox_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    instance = tmp_path_factory.mktemp("order-instance")
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(instance), "CLOUD_PORTAL_TENANTS_FILE": str(TENANTS_FILE),
           "CLOUD_PORTAL_CLOUDS_YAML": str(sandbox_cloud.clouds_yaml), "CLOUD_PORTAL_RECONCILE_INTERVAL_MINUTES": "0"}
    env.pop("CLOUD_PORTAL_DATABASE_URL", None)
    cli = [sys.executable, "-m", "cloud_portal.cli"]
    for args in (["init"], ["tenants", "sync"]):
        done = subprocess.run(cli + args, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    email = "ceri.morgan@torfaen.gov.uk"
    made = subprocess.run(cli + ["users", "add", email, "--name", "Ceri Morgan", "--role", "member", "--tenant",
                                 "torfaen"], env=env, capture_output=True, text=True, timeout=120, check=True)
    password = made.stdout.split("password: ")[1].strip()
    people = {}  # Blaenau Gwent: orders over 4 vCPUs wait for a tenant admin
    for who, role in (("gwen.price@blaenau-gwent.gov.uk", "member"), ("rhys.evans@blaenau-gwent.gov.uk", "tenant_admin")):
        added = subprocess.run(cli + ["users", "add", who, "--name", who.split("@")[0].replace(".", " ").title(),
                                      "--role", role, "--tenant", "blaenau-gwent"],
                               env=env, capture_output=True, text=True, timeout=120, check=True)
        people[role] = (who, added.stdout.split("password: ")[1].strip())
    port = free_port()
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    web = subprocess.Popen([gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                            "--no-control-socket", "cloud_portal:create_app()"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(cli + ["worker", "--threads", "2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(base, web)
        yield {"base": base, "email": email, "password": password, "people": people}
    finally:
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):
            proc.wait(timeout=30)


def test_member_orders_a_vm_and_watches_it_come_up(cloud_portal: dict[str, Any], browser: Any,
                                                  sandbox_cloud: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # for axe
    name = f"finance-web-{uuid.uuid4().hex[:6]}"
    try:
        _sign_in(page, cloud_portal["base"], cloud_portal["email"], cloud_portal["password"])
        page.click("text=Request a virtual machine")
        page.wait_for_selector("input[name=name]")
        page.screenshot(path=str(SHOTS / "request-form-en.png"), full_page=True)
        check_page(page, "request a VM (en)")
        page.fill("input[name=name]", name)
        page.select_option("select[name=catalog_key]", "small")
        page.select_option("select[name=image_key]", "debian-12")
        page.click("input[type=submit]")
        page.wait_for_selector("#request-state")
        # The page updates itself (progress.js) until the request is active.
        # (A CSS/text selector, not wait_for_function: the page's CSP rightly forbids eval.)
        page.wait_for_selector("#request-state[data-state=active]", timeout=120_000)
        steps = page.locator("#steps li").all_inner_texts()
        assert any("Boot server" in s for s in steps) and any("Wait for the server to be running" in s for s in steps)
        page.screenshot(path=str(SHOTS / "request-progress-en.png"), full_page=True)
        check_page(page, "request progress (en)")
        page.click("#server-link a")
        page.wait_for_selector("#server-status")
        assert "ACTIVE" in page.locator("#server-status").inner_text()
        page.screenshot(path=str(SHOTS / "server-en.png"), full_page=True)
        check_page(page, "server (en)")
        page.click("button:has-text('Delete')")
        page.wait_for_selector(".flash.success")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            page.reload()
            if "DELETED" in page.locator("#server-status").inner_text():
                break
            time.sleep(1)
        assert "DELETED" in page.locator("#server-status").inner_text(), page.locator("main").inner_text()
        conn = sandbox_cloud.connect()
        assert not [s for s in conn.compute.servers(all_projects=True) if s.name == name]
    finally:
        page.close()


def test_an_order_over_the_threshold_waits_and_the_tenant_admin_approves_it(cloud_portal: dict[str, Any],
                                                                            browser: Any) -> None:
    base = cloud_portal["base"]
    (member, member_password), (admin, admin_password) = (cloud_portal["people"]["member"],
                                                          cloud_portal["people"]["tenant_admin"])
    name = f"gis-big-{uuid.uuid4().hex[:6]}"
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        _sign_in(page, base, member, member_password)
        page.goto(base + "/requests/new/vm")
        page.fill("input[name=name]", name)
        page.select_option("select[name=catalog_key]", "xlarge")
        page.select_option("select[name=image_key]", "rocky-9")
        page.click("input[type=submit]")
        page.wait_for_selector("#request-state[data-state=pending_approval]")
        assert "approval" in page.locator(".flash").first.inner_text()
        page.screenshot(path=str(SHOTS / "journey-approval-waiting-en.png"), full_page=True)
        check_page(page, "request waiting for approval (en)")
        request_url = page.url
        page.click("text=Sign out")

        _sign_in(page, base, admin, admin_password)
        page.goto(base + "/approvals")
        row = page.locator("tr", has_text=name)
        page.screenshot(path=str(SHOTS / "journey-approval-queue-en.png"), full_page=True)
        check_page(page, "approvals (en)")
        row.locator("button", has_text="Approve").click()
        page.wait_for_selector(".flash.success")
        page.click("text=Sign out")

        _sign_in(page, base, member, member_password)
        page.goto(request_url)
        page.wait_for_selector("#request-state[data-state=active]", timeout=120_000)
        page.screenshot(path=str(SHOTS / "journey-approval-active-en.png"), full_page=True)
        page.click("#server-link a")
        page.wait_for_selector("#server-status")
        page.click("button:has-text('Delete')")
        page.wait_for_selector(".flash.success")
    finally:
        page.close()


def test_a_tenant_admin_adds_a_person_who_then_signs_in(cloud_portal: dict[str, Any], browser: Any) -> None:
    base = cloud_portal["base"]
    admin, admin_password = cloud_portal["people"]["tenant_admin"]
    newcomer = f"nia.{uuid.uuid4().hex[:6]}@blaenau-gwent.gov.uk"
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        _sign_in(page, base, admin, admin_password)
        page.goto(base + "/admin/users")
        page.fill("input[name=display_name]", "Nia Jones")
        page.fill("input[name=email]", newcomer)
        page.select_option("select[name=role]", "member")
        page.click("input[type=submit][value='Add person']")
        page.wait_for_selector("code.secret")
        password = page.locator("code.secret").inner_text().strip()
        page.screenshot(path=str(SHOTS / "journey-person-added-en.png"), full_page=True)
        check_page(page, "person added (en)")
        page.click("text=Sign out")

        _sign_in(page, base, newcomer, password)
        page.wait_for_selector("h1")
        assert "Blaenau Gwent County Borough Council" in page.content() and "Nia Jones" in page.content()
        page.screenshot(path=str(SHOTS / "journey-newcomer-home-en.png"), full_page=True)
    finally:
        page.close()

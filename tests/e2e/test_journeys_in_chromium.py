"""Every journey in Debian chromium against gunicorn, a real queue worker and the sandbox cloud
(ansible-runner + Nova, nothing simulated): order, watch, stop, start and delete; approval;
more quota; a new person; finance closing a month and its files; and the order again with the
keyboard alone. Each page a journey visits is checked with axe and screenshotted
(test-artifacts/screenshots/journey-*.png); durations go to test-artifacts/journeys.json."""
from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT, TENANTS_FILE
from tests.e2e.journey import look, tab_to
from tests.e2e.test_pages_in_chromium import _sign_in
from tests.helpers import free_port, gunicorn_command, wait_for_healthz

pytestmark = [pytest.mark.browser, pytest.mark.integration]
#: An organisation of the journeys' own whose limit is one vCPU, so a medium VM (2 vCPUs) is refused
#: until a platform administrator grants more. A new one (and so a new, empty OpenStack project) each
#: run: Nova counts every server left in a project against its quota, and a shared project such as
#: Monmouthshire's can hold servers other tests left, which would refuse the order even after approval.
BLOCKED_TENANT = f"gwynllyw-{uuid.uuid4().hex[:6]}"
LEDGER_OWNER = "member.nhs-wales@demo.cwmwl.cymru"
REASON = "A survey server for the planning team over the winter."  # typed in English, shown as typed


def _demo_accounts(output: str) -> dict[str, tuple[str, str | None]]:
    """email → (password, TOTP secret or None), from `cloud-portal demo-accounts`."""
    accounts: dict[str, tuple[str, str | None]] = {}
    for line in output.splitlines():  # "email role password [TOTP secret: SECRET]"
        parts = line.split()
        if len(parts) >= 3 and "@" in parts[0]:
            accounts[parts[0]] = (parts[2], parts[-1] if "TOTP" in line else None)
    return accounts


@pytest.fixture(scope="module")
def cloud_portal(sandbox_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    instance = tmp_path_factory.mktemp("journeys-instance")
    doc = yaml.safe_load(TENANTS_FILE.read_text())
    doc["tenants"].append({
        "slug": BLOCKED_TENANT, "name_en": "Gwynllyw County Council", "name_cy": "Cyngor Sir Gwynllyw",
        "cost_centre": f"GWY-{BLOCKED_TENANT[-6:].upper()}", "data_halls": ["local-government"],
        "quotas": {"instances": 10, "vcpus": 1, "ram_mib": 65536, "disk_gb": 1000, "desktops": 5},
        "per_user_quotas": {"instances": 5, "desktops": 2},  # no per-person vCPU limit above the organisation's
        "approval": {"monthly_cost_over": "200.00", "vcpus_over": 8}})
    tenants = instance / "tenants.yaml"
    tenants.write_text(yaml.safe_dump(doc, allow_unicode=True))
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(instance), "CLOUD_PORTAL_TENANTS_FILE": str(tenants),
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
    demo = subprocess.run(cli + ["demo-accounts"], env=env, capture_output=True, text=True, timeout=120, check=True)
    # A server that ran all of last month (seen ACTIVE through the service path; not in Nova).
    seeded = subprocess.run([sys.executable, "-m", "tests.e2e.seed_ledger", LEDGER_OWNER, "ledger-seed"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    web = subprocess.Popen(gunicorn_command(port), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(cli + ["worker", "--threads", "2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(base, web)
        yield {"base": base, "email": email, "password": password, "people": people, "env": env,
               "demo": _demo_accounts(demo.stdout), "ledger_month": seeded.stdout.split()[-1]}
    finally:
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):
            proc.wait(timeout=30)


def _new_page(browser: Any) -> Any:
    """A page in a context of its own (look() opens the Welsh tab beside it; bypass_csp: axe's script)."""
    return browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()


def _wait_for_status(page: Any, wanted: str, seconds: int = 120) -> None:
    """Reload the server page until its status reads ``wanted`` (the worker and Nova get there)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if wanted in page.locator("#server-status").inner_text():
            return
        time.sleep(1)
        page.reload()
    raise AssertionError(f"server never {wanted}: {page.locator('main').inner_text()[:800]}")


def _server_action(page: Any, label: str, then: str) -> None:
    page.click(f"button:has-text('{label}')")
    page.wait_for_selector(".flash.success")
    _wait_for_status(page, then)


def _order_vm(page: Any, base: str, name: str, size: str, image: str) -> None:
    """Fill in and submit the order form for a VM (the answer is left for the caller to check)."""
    page.goto(base + "/requests/new/vm")
    page.fill("input[name=name]", name)
    page.select_option("select[name=catalog_key]", size)
    page.select_option("select[name=image_key]", image)
    page.click("input[type=submit]")


def _delete_the_server_of_the_request(page: Any) -> None:
    """From a request page, go to its server and delete it (clearing up after a journey)."""
    page.click("#server-link a")
    page.wait_for_selector("#server-status")
    page.click("button:has-text('Delete')")
    page.wait_for_selector(".flash.success")


def test_member_orders_a_vm_watches_it_come_up_stops_starts_and_deletes_it(
        cloud_portal: dict[str, Any], browser: Any, sandbox_cloud: Any) -> None:
    page = _new_page(browser)
    name = f"finance-web-{uuid.uuid4().hex[:6]}"
    try:
        _sign_in(page, cloud_portal["base"], cloud_portal["email"], cloud_portal["password"])
        look(page, "member home")
        page.click("text=Request a virtual machine")
        page.wait_for_selector("input[name=name]")
        look(page, "request a VM")
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
        # What a screen reader heard last: the state and the latest step, from the live region.
        announcer = page.locator("#progress-announcer")
        assert announcer.get_attribute("aria-live") == "polite" and announcer.get_attribute("role") == "status"
        assert announcer.inner_text().startswith("Active"), announcer.inner_text()
        look(page, "request progress")
        page.click("#server-link a")
        page.wait_for_selector("#server-status")
        assert "ACTIVE" in page.locator("#server-status").inner_text()
        look(page, "server")
        conn = sandbox_cloud.connect()

        def nova_status() -> str:
            return next(s.status for s in conn.compute.servers(all_projects=True) if s.name == name)
        _server_action(page, "Stop", "SHUTOFF")
        assert nova_status() == "SHUTOFF"
        look(page, "server stopped")
        _server_action(page, "Start", "ACTIVE")
        assert nova_status() == "ACTIVE"
        _server_action(page, "Delete", "DELETED")
        look(page, "server deleted")
        assert not [s for s in conn.compute.servers(all_projects=True) if s.name == name]
    finally:
        page.context.close()


def test_an_order_over_the_threshold_waits_and_the_tenant_admin_approves_it(cloud_portal: dict[str, Any],
                                                                            browser: Any) -> None:
    base = cloud_portal["base"]
    (member, member_password), (admin, admin_password) = (cloud_portal["people"]["member"],
                                                          cloud_portal["people"]["tenant_admin"])
    name = f"gis-big-{uuid.uuid4().hex[:6]}"
    page = _new_page(browser)
    try:
        _sign_in(page, base, member, member_password)
        _order_vm(page, base, name, "xlarge", "rocky-9")
        page.wait_for_selector("#request-state[data-state=pending_approval]")
        assert "approval" in page.locator(".flash").first.inner_text()
        look(page, "approval waiting")
        request_url = page.url
        page.click("text=Sign out")

        _sign_in(page, base, admin, admin_password)
        page.goto(base + "/approvals")
        row = page.locator("tr", has_text=name)
        look(page, "approval queue")
        row.locator("button", has_text="Approve").click()
        page.wait_for_selector(".flash.success")
        page.click("text=Sign out")

        _sign_in(page, base, member, member_password)
        page.goto(request_url)
        page.wait_for_selector("#request-state[data-state=active]", timeout=120_000)
        look(page, "approval active")
        _delete_the_server_of_the_request(page)
    finally:
        page.context.close()


def test_a_blocked_member_asks_for_more_quota_and_after_approval_the_order_goes_through(
        cloud_portal: dict[str, Any], browser: Any, sandbox_cloud: Any) -> None:
    base, demo = cloud_portal["base"], cloud_portal["demo"]
    member = f"member.{BLOCKED_TENANT}@demo.cwmwl.cymru"
    admin = "platform-admin.platform@demo.cwmwl.cymru"
    name = f"survey-{uuid.uuid4().hex[:6]}"
    page = _new_page(browser)
    try:
        _sign_in(page, base, member, demo[member][0])
        _order_vm(page, base, name, "medium", "debian-12")  # 2 vCPUs; the organisation has 1
        refusal = page.locator(".flash.error").first.inner_text()
        assert "vcpus" in refusal.lower() or "vCPU" in refusal, refusal
        assert page.input_value("input[name=name]") == name  # nothing typed is lost
        look(page, "quota refused")
        page.click("a:has-text('Ask for more')")
        page.wait_for_selector("textarea[name=reason]")
        assert page.input_value("input[name=vcpus]") == "1"  # the shortfall, filled in
        page.fill("textarea[name=reason]", REASON)
        look(page, "ask for more quota")
        page.click("input[type=submit]")
        page.wait_for_selector(".flash.success")
        look(page, "my quota requests", also_allowed=(REASON,))
        page.click("text=Sign out")

        _sign_in(page, base, admin, *demo[admin])
        page.goto(base + "/admin/quotas/increases")
        row = page.locator("tr", has_text="planning team")
        look(page, "quota increase queue", also_allowed=(REASON,))
        row.locator("button", has_text="Approve").click()
        page.wait_for_selector(".flash.success")
        look(page, "quota increase approved", also_allowed=(REASON,))
        page.click("text=Sign out")
        conn = sandbox_cloud.connect()
        project = conn.identity.find_project(f"cwmwl-{BLOCKED_TENANT}")
        assert conn.compute.get_quota_set(project.id).cores == 2  # the cloud follows the new limit

        _sign_in(page, base, member, demo[member][0])
        _order_vm(page, base, name, "medium", "debian-12")
        page.wait_for_selector("#request-state[data-state=active]", timeout=120_000)
        look(page, "order after more quota")
        _delete_the_server_of_the_request(page)
    finally:
        page.context.close()


def test_a_tenant_admin_adds_a_person_who_then_signs_in(cloud_portal: dict[str, Any], browser: Any) -> None:
    base = cloud_portal["base"]
    admin, admin_password = cloud_portal["people"]["tenant_admin"]
    newcomer = f"nia.{uuid.uuid4().hex[:6]}@blaenau-gwent.gov.uk"
    page = _new_page(browser)
    try:
        _sign_in(page, base, admin, admin_password)
        page.goto(base + "/admin/users")
        look(page, "people")
        page.fill("input[name=display_name]", "Nia Jones")
        page.fill("input[name=email]", newcomer)
        page.select_option("select[name=role]", "member")
        page.click("input[type=submit][value='Add person']")
        page.wait_for_selector("code.secret")
        password = page.locator("code.secret").inner_text().strip()
        look(page, "person added")
        page.click("text=Sign out")

        _sign_in(page, base, newcomer, password)
        page.wait_for_selector("h1")
        assert "Blaenau Gwent County Borough Council" in page.content() and "Nia Jones" in page.content()
        look(page, "newcomer home")
    finally:
        page.context.close()


def _money(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


def test_finance_closes_last_month_and_its_files_match_the_page(cloud_portal: dict[str, Any], browser: Any,
                                                                tmp_path: Path) -> None:
    base, demo, month = cloud_portal["base"], cloud_portal["demo"], cloud_portal["ledger_month"]
    finance = "finance.platform@demo.cwmwl.cymru"
    # A month closes only after a reconciliation has run since it ended: the real one, on the sandbox.
    done = subprocess.run([sys.executable, "-m", "cloud_portal.cli", "reconcile"], env=cloud_portal["env"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    page = _new_page(browser)
    try:
        _sign_in(page, base, finance, *demo[finance])
        page.goto(f"{base}/finance/?month={month}")
        look(page, "finance month open")
        platform_total = _money(page.locator("#platform-total").inner_text())
        nhs_total = _money(page.locator("#tenant-totals-table tr[data-tenant=nhs-wales] td.total").inner_text())
        assert nhs_total > 0 and platform_total >= nhs_total  # the seeded server ran all month
        page.click(f"button:has-text('Close {month}')")
        page.wait_for_selector(".flash.success")
        assert "closed" in page.locator("#month-state").get_attribute("class")
        assert _money(page.locator("#platform-total").inner_text()) == platform_total
        look(page, "finance month closed")

        def download(link: str) -> bytes:
            with page.expect_download() as info:
                page.click(link)
            path = tmp_path / info.value.suggested_filename
            info.value.save_as(path)
            return path.read_bytes()

        rows = list(csv.DictReader(io.StringIO(download("a:has-text('CSV') >> nth=0").decode("utf-8"))))
        assert rows and sum(Decimal(r["amount_gbp"]) for r in rows) == platform_total
        assert sum(Decimal(r["amount_gbp"]) for r in rows if r["tenant"] == "nhs-wales") == nhs_total

        from openpyxl import load_workbook
        sheet = load_workbook(io.BytesIO(download("a:has-text('Excel workbook')")), read_only=True).active
        table = [row for row in sheet.iter_rows(values_only=True)]
        amount = list(table[0]).index("amount_gbp")
        assert table[-1][0] == "Total" and Decimal(str(table[-1][amount])).quantize(Decimal("0.01")) == platform_total

        from pypdf import PdfReader
        pdf = download("#tenant-totals-table tr[data-tenant=nhs-wales] a:has-text('PDF')")
        text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
        assert f"£{nhs_total:,.2f}" in text and LEDGER_OWNER in text, text[:600]
    finally:
        page.context.close()


def test_the_order_journey_with_the_keyboard_alone(cloud_portal: dict[str, Any], browser: Any) -> None:
    """No mouse: Tab, typing, Enter and the arrow keys; the focus is visible at every stop."""
    base = cloud_portal["base"]
    member, password = cloud_portal["people"]["member"]
    name = f"keys-{uuid.uuid4().hex[:6]}"
    page = _new_page(browser)
    try:
        page.goto(base + "/sign-in")
        tab_to(page, lambda f: f["name"] == "email", "the e-mail field")
        page.keyboard.type(member)
        tab_to(page, lambda f: f["name"] == "password", "the password field")
        page.keyboard.type(password)
        page.keyboard.press("Enter")
        page.wait_for_url(base + "/")
        # The skip link comes first and takes the focus past the header.
        first = tab_to(page, lambda f: f["href"] == "#main", "the skip link", limit=1)
        assert first["text"]
        tab_to(page, lambda f: f["text"] == "Request a virtual machine", "the order link")
        page.keyboard.press("Enter")
        page.wait_for_selector("input[name=name]")
        tab_to(page, lambda f: f["name"] == "name", "the name field")
        page.keyboard.type(name)
        tab_to(page, lambda f: f["name"] == "catalog_key", "the size")
        for _ in range(6):  # down the list to "small" (a closed select changes with the arrow keys)
            if page.input_value("select[name=catalog_key]") == "small":
                break
            page.keyboard.press("ArrowDown")
        assert page.input_value("select[name=catalog_key]") == "small"
        tab_to(page, lambda f: f["name"] == "image_key", "the image")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowUp")  # the first image, chosen by key
        look(page, "keyboard order form")
        tab_to(page, lambda f: f["type"] == "submit" and f["tag"] == "input", "the submit button")
        page.keyboard.press("Enter")
        page.wait_for_selector("#request-state[data-state=active]", timeout=120_000)
        tab_to(page, lambda f: f["text"] == "Go to the server", "the server link")
        page.keyboard.press("Enter")
        page.wait_for_selector("#server-status")
        assert name in page.locator("h1").inner_text()
        tab_to(page, lambda f: f["text"] == "Delete", "the delete button")
        page.keyboard.press("Enter")
        page.wait_for_selector(".flash.success")
    finally:
        page.context.close()

"""Finance pages and "everyone sees their money": figures worked out by hand, roles, month close.

Rates (tenants.yaml): vcpu_hour £0.0150, ram_gb_hour £0.0050, disk_gb_month £0.0400; a small VM
has 1 vCPU, 2 GB of RAM and 20 GB of disk; the Office desktop (Windows) is £45.00 a month.
November 2026 in Europe/London is GMT: 30 days, 720 hours; December has 744 hours.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from cloud_portal.billing import months, reports, summaries
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import servers
from cloud_portal.timeutil import frozen_at
from tests.helpers import server_seen_active, sign_in, utc

TENANT_OF = {"member": "torfaen", "tenant_admin": "torfaen", "platform_admin": "platform", "finance": "platform"}






@pytest.fixture
def scenario(make_user: Any) -> dict[str, Any]:
    """Alys (Torfaen): a small VM running from 1 November 2026, never stopped.
    Nia (NHS Wales): an Office desktop (Windows) from 16 November 2026."""
    alys = make_user("member", "torfaen")
    nia = make_user("member", "nhs-wales")
    vm = server_seen_active(alys, "ledger-web", utc("2026-11-01T00:00:00"))
    desk = server_seen_active(nia, "nia-desk", utc("2026-11-16T00:00:00"), kind="desktop", size="office-windows", hall="nhs")
    return {"alys": alys, "nia": nia, "vm": vm, "desk": desk}


def _client_as(app: Any, make_user: Any, role: str) -> Any:
    client = app.test_client()
    sign_in(client, make_user(role, TENANT_OF[role]).email)
    return client


def _row(page: str, table_id: str, slug: str) -> str:
    """The <tr data-tenant="slug"> row of the table ``table_id``."""
    table = re.search(rf'<table id="{table_id}".*?</table>', page, re.S)
    assert table, f"no table {table_id}"
    row = re.search(rf'<tr data-tenant="{slug}">.*?</tr>', table.group(0), re.S)
    assert row, f"no row {slug} in {table_id}"
    return re.sub(r"\s+", " ", row.group(0))


@pytest.mark.parametrize("role", ["finance", "platform_admin", "member", "tenant_admin"])
def test_finance_pages_by_role(app: Any, make_user: Any, scenario: dict[str, Any], role: str) -> None:
    client = _client_as(app, make_user, role)
    pages = ["/finance/", "/finance/?month=2026-11", "/finance/tenants/torfaen?month=2026-11",
             f"/finance/people/{scenario['alys'].id}?month=2026-11",
             f"/finance/servers/{scenario['vm'].id}?month=2026-11"]
    expected = 200 if role in ("finance", "platform_admin") else 403
    with frozen_at(utc("2026-12-10T00:00:00")):
        for page in pages:
            assert client.get(page).status_code == expected, f"{role} {page}"
        assert client.post("/finance/months/2026-11/close").status_code in ((302,) if expected == 200 else (403,))
        if expected == 403:
            assert client.get("/finance/export?month=2026-11&format=csv").status_code == 403
            assert not months.is_closed("2026-11")
    if expected == 200:
        assert client.get("/finance/tenants/no-such-tenant").status_code == 404
        assert client.get("/finance/people/999999").status_code == 404
        assert client.get("/finance/servers/999999").status_code == 404


def test_overview_figures_match_the_domain(app: Any, make_user: Any, scenario: dict[str, Any]) -> None:
    client = _client_as(app, make_user, "finance")
    with frozen_at(utc("2026-12-10T00:00:00")):
        november = client.get("/finance/?month=2026-11").get_data(as_text=True)
        december = client.get("/finance/").get_data(as_text=True)  # default: the current month
        totals = reports.tenant_totals("2026-11")
        partners = summaries.partner_summary("2026-11")
    by_slug = {r.tenant.slug: r for r in totals.rows}
    # November: Alys's VM all month: 720 vCPU-h × 0.015 = 10.80; 1,440 GB-h × 0.005 = 7.20; 20 GB × 0.04 = 0.80.
    # Nia's desktop 16–30 November: £45 × 15/30 = 22.50. Nothing in October.
    assert by_slug["torfaen"].total == Decimal("18.80") and by_slug["torfaen"].previous == Decimal("0.00")
    assert by_slug["nhs-wales"].total == Decimal("22.50") and totals.total == Decimal("41.30")
    row = _row(november, "tenant-totals-table", "torfaen")
    assert "£18.80" in row and "+£18.80" in row and "TOR-IT-4410" in row
    assert "£22.50" in _row(november, "tenant-totals-table", "nhs-wales")
    assert 'id="platform-total">£41.30<' in november
    # December to 10th 00:00 (216 h of 744): 3.24 + 2.16 + 20 × 216/744 × 0.04 = 0.2323 → 0.23, so 5.63,
    # down £13.17 on November (−70.1 %).
    row = _row(december, "tenant-totals-table", "torfaen")
    assert "£5.63" in row and "£18.80" in row and "−£13.17" in row and "−70.1%" in row
    # Partner summary: 720 vCPU-hours, 1,440 GB-hours; one desktop; shares 18.80/41.30 = 45.5 %, 54.5 %.
    assert {r.tenant.slug: (r.vcpu_hours, r.ram_gb_hours, r.desktops, r.cost, r.share) for r in partners.rows
            if r.cost} == {"torfaen": (Decimal("720.00"), Decimal("1440.00"), 0, Decimal("18.80"), Decimal("45.5")),
                           "nhs-wales": (Decimal("0.00"), Decimal("0.00"), 1, Decimal("22.50"), Decimal("54.5"))}
    row = _row(november, "partner-table", "torfaen")
    assert "720.00" in row and "1,440.00" in row and "£18.80" in row and "45.5%" in row
    row = _row(november, "partner-table", "nhs-wales")
    assert ">1<" in row and "£22.50" in row and "54.5%" in row
    # Open month: said so; the close button is there.
    assert "Open: charges to date" in november and 'action="/finance/months/2026-11/close"' in november


def test_drill_down_tenant_person_server_intervals(app: Any, make_user: Any, scenario: dict[str, Any]) -> None:
    client = _client_as(app, make_user, "platform_admin")
    alys, vm = scenario["alys"], scenario["vm"]
    with frozen_at(utc("2026-12-10T00:00:00")):
        tenant = client.get("/finance/tenants/torfaen?month=2026-11").get_data(as_text=True)
        person = client.get(f"/finance/people/{alys.id}?month=2026-11").get_data(as_text=True)
        server = client.get(f"/finance/servers/{vm.id}?month=2026-11").get_data(as_text=True)
        people = reports.people_totals("2026-11", alys.tenant_id)
        intervals = reports.intervals_for(vm.id, "2026-11")
    assert [(p.email, p.total, p.servers) for p in people] == [(alys.email, Decimal("18.80"), 1)]
    assert alys.email in tenant and f"/finance/people/{alys.id}?month=2026-11" in tenant
    assert 'id="tenant-total">£18.80<' in tenant
    assert "/finance/export?month=2026-11&amp;format=pdf&amp;tenant=torfaen" in tenant
    assert f"/finance/servers/{vm.id}?month=2026-11" in person and "ledger-web" in person
    assert "£10.80" in person and "£7.20" in person and "£0.80" in person and 'id="person-total">£18.80<' in person
    assert 'id="server-total">£18.80<' in server
    # One interval, open, the whole of November inside the month: 720 hours.
    assert [(i.state, i.hours_in_month, i.ended_at) for i in intervals] == [("running", Decimal("720.00"), None)]
    assert "2026-11-01 00:00:00" in server and "720.00" in server and "still open" in server


def test_month_picker_refuses_a_bad_month(app: Any, make_user: Any, synced: None) -> None:
    client = _client_as(app, make_user, "finance")
    with frozen_at(utc("2026-12-10T00:00:00")):
        for url in ("/finance/?month=2026-13", "/finance/tenants/torfaen?month=November",
                    "/finance/?month=%3Cb%3E"):
            response = client.get(url)
            page = response.get_data(as_text=True)
            assert response.status_code == 400, url
            assert "is not a month" in page and "YYYY-MM" in page and "Showing the current month instead" in page
            assert 'value="2026-12"' in page  # the picker shows the month shown
        assert "<b>" not in client.get("/finance/?month=%3Cb%3E").get_data(as_text=True).split("<main id=\"main\" tabindex=\"-1\">")[1]
        # The export route says so on the overview, too.
        response = client.get("/finance/export?month=2026-13&format=csv", follow_redirects=True)
        assert response.status_code == 200 and "not a month" in response.get_data(as_text=True)


def test_closing_from_the_page(app: Any, make_user: Any, scenario: dict[str, Any]) -> None:
    finance = make_user("finance", "platform")
    client = app.test_client()
    sign_in(client, finance.email)
    with frozen_at(utc("2026-12-01T00:00:10")):
        refused = client.post("/finance/months/2026-11/close", follow_redirects=True)
        page = refused.get_data(as_text=True)
        assert refused.request.path == "/finance/" and refused.request.args["month"] == "2026-11"
        assert "No reconciliation has completed since 2026-11 ended" in page and 'class="flash error"' in page
        assert not months.is_closed("2026-11")
        db.session.add(m.ReconcileRun())
        db.session.commit()
        done = client.post("/finance/months/2026-11/close", follow_redirects=True).get_data(as_text=True)
        # 18.80 (Alys) + 22.50 (Nia) in 4 lines: vcpu, ram, disk, desktop
        assert "2026-11 is closed: 4 statement lines, £41.30 in all." in done
        assert months.is_closed("2026-11")
        assert f"Closed on 2026-12-01 00:00 GMT by {finance.email}" in done
        assert 'action="/finance/months/2026-11/close"' not in done
        again = client.post("/finance/months/2026-11/close", follow_redirects=True).get_data(as_text=True)
        assert "2026-11 was already closed; nothing changed." in again
        # An open month that has not ended: the reason, on the page.
        early = client.post("/finance/months/2026-12/close", follow_redirects=True).get_data(as_text=True)
        assert "2026-12 has not ended yet" in early
    # The closed month's figures come from its lines, in the table and the chart's table alike.
    with frozen_at(utc("2027-01-10T00:00:00")):
        page = client.get("/finance/?month=2026-12").get_data(as_text=True)
    assert "£18.80" in _row(page, "tenant-totals-table", "torfaen")


def test_chart_and_its_table_alternative(app: Any, make_user: Any, scenario: dict[str, Any]) -> None:
    client = _client_as(app, make_user, "finance")
    with frozen_at(utc("2026-12-10T00:00:00")):
        page = client.get("/finance/?month=2026-11").get_data(as_text=True)
        series = summaries.monthly_series("2026-11")
    assert series.months[0] == "2025-12" and series.months[-1] == "2026-11" and len(series.months) == 12
    svg = re.search(r"<svg id=\"spend-chart\".*?</svg>", page, re.S)
    assert svg and 'role="img"' in svg.group(0) and 'aria-labelledby="chart-title chart-desc"' in svg.group(0)
    assert '<title id="chart-title">Monthly spend by organisation, 2025-12 to 2026-11</title>' in svg.group(0)
    assert "The highest month is 2026-11 at £41.30" in svg.group(0)
    assert svg.group(0).count('<rect class="bar') == 2  # November: Torfaen and NHS Wales
    assert "<script" not in page and "style=" not in page  # CSP: no inline scripts or styles
    table = re.search(r'<table id="spend-table".*?</table>', page, re.S)
    assert table and "<caption>" in table.group(0) and 'scope="col"' in table.group(0)
    assert 'scope="row">Torfaen County Borough Council</th>' in table.group(0)
    torfaen = next(r for r in series.rows if r.tenant.slug == "torfaen")
    assert torfaen.totals[-1] == Decimal("18.80") and sum(torfaen.totals[:-1]) == 0


def test_home_page_shows_month_to_date_and_forecast(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    admin = make_user("tenant_admin", "torfaen")
    vm = server_seen_active(member, "mtd", utc("2026-11-03T12:00:00"))
    client = app.test_client()
    sign_in(client, member.email)
    with frozen_at(utc("2026-11-10T18:00:00")):
        home = client.get("/").get_data(as_text=True)
        server_page = client.get(f"/servers/{vm.id}").get_data(as_text=True)
        figures = reports.month_to_date(member.id)
    # So far, 3 Nov 12:00 → 10 Nov 18:00 = 174 h: 174 vCPU-h × 0.015 = 2.61; 348 GB-h × 0.005 = 1.74;
    # disk 20 GB × 174/720 × 0.04 = 0.1933 → 0.19. Total £4.54.
    # Forecast, running to 1 Dec 00:00 = 660 h: 9.90 + 6.60 + 20 × 660/720 × 0.04 = 0.7333 → 0.73. Total £17.23.
    assert (figures.so_far, figures.forecast) == (Decimal("4.54"), Decimal("17.23"))
    assert 'id="month-to-date">£4.54<' in home and 'id="month-forecast">£17.23<' in home
    assert "Your charges in 2026-11" in home
    assert 'id="server-cost">£4.54' in server_page
    assert "people-spend" not in home  # members see their own figures only
    admin_client = app.test_client()
    sign_in(admin_client, admin.email)
    with frozen_at(utc("2026-11-10T18:00:00")):
        admin_home = admin_client.get("/").get_data(as_text=True)
    table = re.search(r'<table id="people-spend".*?</table>', admin_home, re.S)
    assert table and member.email in table.group(0) and "£4.54" in table.group(0)
    assert 'id="month-to-date">£0.00<' in admin_home  # the admin's own: nothing
    finance_client = _client_as(app, make_user, "finance")
    with frozen_at(utc("2026-11-10T18:00:00")):
        platform_home = finance_client.get("/").get_data(as_text=True)
    assert "£4.54" in platform_home  # Torfaen's month to date in the organisations table


def test_server_cost_so_far_counts_a_stop(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    vm = server_seen_active(member, "stopper", utc("2026-11-01T00:00:00"))
    servers.transition(vm, cause="test", at=utc("2026-11-02T00:00:00"), status="SHUTOFF")
    db.session.commit()
    with frozen_at(utc("2026-11-11T00:00:00")):
        cost = reports.server_cost_so_far(vm.id)
    # Running 24 h: 0.36 + 0.24; disk 10 days: 20 × 10/30 × 0.04 = 0.2667 → 0.27 (one line). £0.87 so far;
    # forecast: stopped to the month end, disk 30 days = 0.80, so £1.40.
    assert (cost.so_far, cost.forecast) == (Decimal("0.87"), Decimal("1.40"))


def _bulk_servers(owners: list[Any], count: int, start: int) -> None:
    """``count`` small VMs, first ACTIVE on 1 November, spread over ``owners`` (no request or queue;
    the ledger interval comes from the transition, as in production)."""
    for i in range(start, start + count):
        owner = owners[i % len(owners)]
        server = m.Server(tenant_id=owner.tenant_id, kind="vm", name=f"bulk-{i}", flavor="cc.small", vcpus=1,
                          ram_mib=2048, disk_gb=20, image_key="debian-12", data_hall="local-government")
        db.session.add(server)
        servers.transition(server, cause="created", at=utc("2026-11-01T00:00:00"), status="ACTIVE",
                           owner_id=owner.id)
    db.session.commit()


def test_tenant_totals_page_query_count_does_not_grow(app: Any, make_user: Any, count_queries: Any) -> None:
    owners = [make_user("member", "torfaen"), make_user("member", "monmouthshire"),
              make_user("tenant_admin", "torfaen")]
    client = _client_as(app, make_user, "finance")
    _bulk_servers(owners, 2, 0)
    with frozen_at(utc("2026-12-10T00:00:00")):
        client.get("/finance/?month=2026-11")  # warm up (session, catalog)
        with count_queries() as few:
            small = client.get("/finance/?month=2026-11")
        with count_queries() as few_people:
            client.get("/finance/tenants/torfaen?month=2026-11")
        _bulk_servers(owners + [make_user("member", "torfaen")], 18, 2)
        with count_queries() as many:
            big = client.get("/finance/?month=2026-11")
        with count_queries() as many_people:
            client.get("/finance/tenants/torfaen?month=2026-11")
    assert small.status_code == big.status_code == 200
    assert many.count == few.count, (few.count, many.count)
    assert many_people.count == few_people.count, (few_people.count, many_people.count)
    # And the figures grew: 20 small VMs all November, £18.80 each.
    assert 'id="platform-total">£376.00<' in big.get_data(as_text=True)


def test_export_downloads(app: Any, make_user: Any, scenario: dict[str, Any]) -> None:
    client = _client_as(app, make_user, "finance")
    with frozen_at(utc("2026-12-10T00:00:00")):
        everyone = client.get("/finance/export?month=2026-11&format=csv")
        torfaen = client.get("/finance/export?month=2026-11&format=csv&tenant=torfaen")
        journal = client.get("/finance/export?month=2026-11&format=journal")
        pdf = client.get("/finance/export?month=2026-11&format=pdf&tenant=nhs-wales")
        bad_format = client.get("/finance/export?month=2026-11&format=doc", follow_redirects=True)
        no_tenant = client.get("/finance/export?month=2026-11&format=csv&tenant=atlantis", follow_redirects=True)
    assert everyone.status_code == 200 and everyone.mimetype == "text/csv"
    assert everyone.headers["Content-Disposition"] == 'attachment; filename="cwmwl-2026-11.csv"'
    body = everyone.get_data(as_text=True)
    assert "ledger-web" in body and "nia-desk" in body and "22.50" in body
    assert torfaen.headers["Content-Disposition"] == 'attachment; filename="cwmwl-2026-11-torfaen.csv"'
    assert "nia-desk" not in torfaen.get_data(as_text=True)
    assert "TOR-IT-4410,18.80" in journal.get_data(as_text=True)
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"] == 'attachment; filename="cwmwl-2026-11-nhs-wales.pdf"'
    assert bad_format.request.path == "/finance/" and "not an export format" in bad_format.get_data(as_text=True)
    assert "There is no organisation atlantis." in no_tenant.get_data(as_text=True)


def test_cross_check_page(app: Any, make_user: Any, synced: None) -> None:
    """Recorded differences are listed; running it without a cloud says what is missing."""
    from cloud_portal.billing.crosscheck import FINDING_USAGE_MISMATCH
    from cloud_portal.extensions import db
    from cloud_portal.provisioning.models import ReconcileFinding
    db.session.add(ReconcileFinding(kind=FINDING_USAGE_MISMATCH, openstack_id="2026-11:abc", tenant_id=None,
                                    detail="2026-11: web-1 (torfaen): the ledger has 10.00 h, Nova 12.50 h"))
    db.session.commit()
    assert _client_as(app, make_user, "member").get("/finance/cross-check?month=2026-11").status_code == 403
    finance = _client_as(app, make_user, "finance")
    page = finance.get("/finance/cross-check?month=2026-11").get_data(as_text=True)
    assert "the ledger has 10.00 h, Nova 12.50 h" in page
    assert "No differences" in finance.get("/finance/cross-check?month=2026-10").get_data(as_text=True)
    ran = finance.post("/finance/cross-check/2026-11", follow_redirects=True).get_data(as_text=True)
    assert "No cloud is configured" in ran


def test_long_people_lists_are_paged_and_the_home_page_names_the_top_ten(app: Any, make_user: Any) -> None:
    people = [make_user("member", "torfaen") for _ in range(55)]
    _bulk_servers(people, 55, 100)  # one small VM each, all November: £18.80 each
    finance = _client_as(app, make_user, "finance")
    with frozen_at(utc("2026-12-10T00:00:00")):
        first = finance.get("/finance/tenants/torfaen?month=2026-11").get_data(as_text=True)
        shown = re.findall(r'<a href="/finance/people/(\d+)\?month=2026-11">', first)
        assert len(shown) == 50 and 'id="tenant-total">£1,034.00<' in first  # everyone's total
        after = re.search(r'<a href="([^"]+)" rel="next">', first)
        assert after, "a next-page link"
        second = finance.get(after.group(1).replace("&amp;", "&")).get_data(as_text=True)
        rest = re.findall(r'<a href="/finance/people/(\d+)\?month=2026-11">', second)
        assert len(rest) == 5 and not set(rest) & set(shown)
        assert {int(i) for i in shown + rest} == {p.id for p in people}
        assert 'id="tenant-total">£1,034.00<' in second and 'rel="next"' not in second
        # A cut or edited link leads back to the list's first page (same month), saying why.
        broken = finance.get("/finance/tenants/torfaen?month=2026-11&after=bm9wZQ")
        assert broken.status_code == 302 and broken.headers["Location"].endswith(
            "/finance/tenants/torfaen?month=2026-11")
        assert "That page link is not valid" in finance.get(broken.headers["Location"]).get_data(as_text=True)
    admin = app.test_client()
    sign_in(admin, make_user("tenant_admin", "torfaen").email)
    with frozen_at(utc("2026-11-10T00:00:00")):
        home = admin.get("/").get_data(as_text=True)
    table = re.search(r'<table id="people-spend".*?</table>', home, re.S)
    assert table
    named = re.findall(r"\(([^)]+@[^)]+)\)</span>", table.group(0))
    assert len(named) == 10 and "Everyone else (45 people)" in table.group(0)
    # 9 days of a small VM: 216 vCPU-h × 0.015 + 432 GB-h × 0.005 + 20 GB × 216/720 × 0.04 = £5.64 each.
    assert "£310.20" in table.group(0)  # the total is everyone's, not the ten shown


def test_in_memory_pages_walk_both_ways() -> None:
    from cloud_portal.errors import InvalidInput
    from cloud_portal.paging import PageRequest, encode_cursor, page_of_rows
    rows = list(range(23))
    page = page_of_rows(rows, PageRequest(), 10)
    assert page.items == list(range(10)) and not page.has_prev and page.has_next and page.total == 23
    page = page_of_rows(rows, PageRequest(after=page.next_cursor), 10)
    assert page.items == list(range(10, 20)) and page.has_prev and page.has_next
    page = page_of_rows(rows, PageRequest(after=page.next_cursor), 10)
    assert page.items == [20, 21, 22] and not page.has_next
    back = page_of_rows(rows, PageRequest(before=page.prev_cursor), 10)
    assert back.items == list(range(10, 20))
    assert page_of_rows(rows, PageRequest(last=True), 10).items == list(range(13, 23))
    with pytest.raises(InvalidInput):
        page_of_rows(rows, PageRequest(after=encode_cursor([99])), 10)


def test_rates_are_read_once_per_request_and_afresh_after_a_change(app: Any, count_queries: Any) -> None:
    from datetime import date

    from cloud_portal.catalog.service import rate_versions, replace_rate_versions
    wanted = {(key, since): price for key, versions in rate_versions().items() for since, price in versions}
    with app.test_request_context("/finance/"):
        with count_queries() as counter:
            first = rate_versions()
            assert rate_versions() is first
        assert counter.count == 1
        replace_rate_versions({**wanted, ("vcpu_hour", date(2027, 1, 1)): Decimal("0.02")})
        assert (date(2027, 1, 1), Decimal("0.02")) in rate_versions()["vcpu_hour"]
    with app.test_request_context("/finance/"):
        assert (date(2027, 1, 1), Decimal("0.02")) in rate_versions()["vcpu_hour"]
    db.session.rollback()

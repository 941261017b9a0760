"""Long lists: seek pages visit every row once in order, in both directions, for every sort; a
page costs the same number of statements with 10 rows as with 1,000; bad page links get a clear
answer; the people page is built once per page."""
from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import update

from cloud_portal.accounts.models import User
from cloud_portal.accounts.service import create_api_token, visible_users_listing
from cloud_portal.audit.service import visible_events_listing
from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.paging import Listing, PageRequest, count_capped, decode_cursor, encode_cursor, seek_page
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.requests import requests_listing
from cloud_portal.provisioning.servers import SORTABLE, servers_listing
from cloud_portal.quotas.models import QuotaIncreaseRequest
from tests.conftest import PASSWORD
from tests.fixtures.scale import seed_lists


def _walk_forwards(listing: Listing[Any], per_page: int) -> list[int]:
    seen: list[int] = []
    page = seek_page(listing, PageRequest(), per_page)
    assert not page.has_prev
    while True:
        seen += [row.id for row in page.items]
        if not page.has_next:
            return seen
        page = seek_page(listing, PageRequest(after=page.next_cursor), per_page)
        assert page.has_prev


def _walk_backwards(listing: Listing[Any], per_page: int) -> list[int]:
    seen: list[int] = []
    page = seek_page(listing, PageRequest(last=True), per_page)
    assert not page.has_next
    while True:
        seen = [row.id for row in page.items] + seen
        if not page.has_prev:
            return seen
        page = seek_page(listing, PageRequest(before=page.prev_cursor), per_page)
        assert page.has_next


def _deduplicated_from_start(ids: list[int]) -> list[int]:
    # Stepping back to the start shows a full first page, which may repeat rows already seen.
    out: list[int] = []
    for i in ids:
        if i not in out:
            out.append(i)
    return out


def test_seek_pages_visit_every_row_once_in_order_for_every_sort(app: Any, make_user: Any) -> None:
    admin = make_user("platform_admin", "platform")
    seed_lists(users=40, servers=90, audit_events=60)
    listings: list[Listing[Any]] = [servers_listing(admin, scope="all", sort=sort, descending=descending)
                                    for sort in SORTABLE for descending in (True, False)]
    listings += [requests_listing(admin, scope="tenant"), requests_listing(admin, scope="approvals"),
                 visible_users_listing(admin), visible_events_listing(admin)]
    for listing in listings:
        everything = [row.id for row in db.session.scalars(listing.ordered()).unique()]
        assert len(everything) == len(set(everything))
        assert _walk_forwards(listing, 7) == everything
        assert _deduplicated_from_start(_walk_backwards(listing, 7)) == everything
    # Ties: many servers share a status and a size, and the id breaks them the same way each time.
    by_status = servers_listing(admin, scope="all", sort="status", descending=False)
    statuses = [s.status for s in db.session.scalars(by_status.ordered())]
    assert statuses == sorted(statuses) and len(set(statuses)) < len(statuses)


def test_walking_back_from_the_last_page_meets_the_first(app: Any, make_user: Any) -> None:
    admin = make_user("platform_admin", "platform")
    seed_lists(users=10, servers=50)
    listing = servers_listing(admin, scope="all", sort="name", descending=False)
    everything = [row.id for row in db.session.scalars(listing.ordered())]
    backwards = _walk_backwards(listing, 7)
    # The last page holds the final 7; stepping back from it reaches a full first page.
    assert backwards[-7:] == everything[-7:] and backwards[:7] == everything[:7]
    assert set(backwards) == set(everything)


def test_cursors_are_checked(app: Any) -> None:
    from datetime import UTC, datetime
    moment = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    assert decode_cursor(encode_cursor([moment, 5, "x"]), 3) == [moment, 5, "x"]
    for bad in ("", "not base64!", encode_cursor([1]), encode_cursor([[1], 2]), encode_cursor([True, 1]),
                "W1sidCIsIm5vdCBhIGRhdGUiXSxbInYiLDFdXQ"):
        with pytest.raises(InvalidInput):
            decode_cursor(bad, 2)
    with pytest.raises(InvalidInput, match="one of after, before or last"):
        PageRequest.from_args({"after": "x", "last": "1"})


def test_counts_stop_at_the_cap(app: Any, make_user: Any) -> None:
    admin = make_user("platform_admin", "platform")
    seed_lists(users=5, servers=30)
    query = servers_listing(admin, scope="all").query
    assert count_capped(query, cap=10) == (10, True)
    assert count_capped(query, cap=1000)[1] is False and 20 < count_capped(query, cap=1000)[0] <= 30


def _own_half(member: User, admin: User) -> None:
    """Give half the seeded rows to ``member`` (and their tenant), so "mine" lists are long too."""
    db.session.execute(update(m.ServerRequest).where(m.ServerRequest.id % 2 == 0)
                       .values(requester_id=member.id, owner_id=member.id, tenant_id=member.tenant_id))
    # Some of them wait for approval, so the approvals lists are never empty either.
    db.session.execute(update(m.ServerRequest).where(m.ServerRequest.id % 4 == 0).values(state=m.PENDING_APPROVAL))
    db.session.execute(update(m.Server).where(m.Server.id % 2 == 0)
                       .values(owner_id=member.id, tenant_id=member.tenant_id))
    db.session.execute(update(QuotaIncreaseRequest).where(QuotaIncreaseRequest.id % 2 == 0)
                       .values(requester_id=member.id, tenant_id=member.tenant_id))
    db.session.execute(update(User).where(User.id % 3 == 0, User.role == "member")
                       .values(tenant_id=admin.tenant_id))
    from cloud_portal.audit.models import AuditEvent
    db.session.execute(update(AuditEvent).where(AuditEvent.id % 2 == 0).values(tenant_id=member.tenant_id))
    db.session.commit()


PAGES = {
    "member": ["/servers", "/requests", "/quotas/increases"],
    "tenant_admin": ["/servers?scope=tenant", "/servers?scope=tenant&sort=name&dir=asc", "/requests?scope=tenant",
                     "/approvals", "/admin/users", "/admin/audit"],
    "platform_admin": [f"/servers?scope=all&sort={sort}&dir={d}" for sort in SORTABLE for d in ("asc", "desc")]
    + ["/admin/users", "/admin/audit", "/admin/quotas/increases", "/approvals", "/requests?scope=tenant"],
}
API = {
    "member": ["/api/v1/servers", "/api/v1/requests", "/api/v1/quota-increases"],
    "tenant_admin": ["/api/v1/servers?scope=tenant", "/api/v1/requests?scope=tenant",
                     "/api/v1/requests?scope=approvals"],
    "platform_admin": ["/api/v1/servers?scope=all&sort=name", "/api/v1/quota-increases?scope=all"],
}


def _statements(app: Any, count_queries: Any, user: User, token: str) -> dict[str, int]:
    """Statements per list page: its first page, the next, and the last (followed from the links)."""
    counts: dict[str, int] = {}
    client = app.test_client()
    client.post("/sign-in", data={"email": user.email, "password": PASSWORD})
    # The token's use is recorded at most once a minute: let that write happen before counting.
    client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    for url in PAGES[user.role]:
        with count_queries() as counter:
            page = client.get(url)
        assert page.status_code == 200, url
        counts[url] = counter.count
        html = page.get_data(as_text=True)
        for rel in ("next", "last"):
            link = re.search(r'<a href="([^"]+)"[^>]*>' + {"next": "Next", "last": "Last"}[rel], html)
            if link:
                with count_queries() as counter:
                    assert client.get(link.group(1).replace("&amp;", "&")).status_code == 200
                counts[f"{url} {rel}"] = counter.count
    for url in API[user.role]:
        with count_queries() as counter:
            body = client.get(url, headers={"Authorization": f"Bearer {token}"}).get_json()
        counts[url] = counter.count
        if body.get("next"):
            sep = "&" if "?" in url else "?"
            with count_queries() as counter:
                more = client.get(f"{url}{sep}after={body['next']}", headers={"Authorization": f"Bearer {token}"})
            assert more.status_code == 200 and more.get_json()["items"]
            counts[f"{url} next"] = counter.count
    return counts


def test_list_pages_cost_the_same_statements_at_10_and_1000_rows(app: Any, make_user: Any,
                                                                   count_queries: Any) -> None:
    member = make_user("member", "torfaen")
    admin = make_user("tenant_admin", "torfaen")
    platform = make_user("platform_admin", "platform")
    people = [member, admin, platform]
    tokens = {}
    for person in people:
        tokens[person.id] = create_api_token(None, person, "list pages")
    db.session.commit()
    seed_lists(users=10, servers=12, audit_events=12, increases=12, tag="a")
    _own_half(member, admin)
    few = {p.role: _statements(app, count_queries, p, tokens[p.id]) for p in people}
    seed_lists(users=1000, servers=1000, audit_events=1000, increases=200, tag="b", seed=2)
    _own_half(member, admin)
    many = {p.role: _statements(app, count_queries, p, tokens[p.id]) for p in people}
    for role in few:
        for url, count in few[role].items():
            assert many[role][url] == count, f"{role} {url}: {count} statements at 10 rows, {many[role][url]} at 1,000"
        # With 1,000 rows every list has a next page, and its statements were counted too.
        assert any(url.endswith(" next") for url in many[role]), role


def test_pages_move_both_ways_and_keep_their_arguments(app: Any, make_user: Any, client: Any, auth: Any) -> None:
    admin = make_user("platform_admin", "platform")
    seed_lists(users=20, servers=120)
    auth.sign_in(admin.email)
    first = client.get("/servers?scope=all&sort=name&dir=asc").get_data(as_text=True)
    assert "More than" not in first and "in all" in first
    names = re.findall(r'<a href="/servers/\d+">([^<]+)</a>', first)
    assert names == sorted(names) and len(names) == 25
    after = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert after and "scope=all" in after.group(1) and "sort=name" in after.group(1)
    second = client.get(after.group(1).replace("&amp;", "&")).get_data(as_text=True)
    second_names = re.findall(r'<a href="/servers/\d+">([^<]+)</a>', second)
    assert second_names[0] > names[-1] and not set(second_names) & set(names)
    back = re.search(r'<a href="([^"]+)" rel="prev">', second)
    assert back
    again = client.get(back.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'<a href="/servers/\d+">([^<]+)</a>', again) == names
    # A cut or edited link: back to the first page of the same list, saying why.
    broken = client.get("/servers?scope=all&sort=name&dir=asc&after=bm9wZQ", follow_redirects=True)
    html = broken.get_data(as_text=True)
    assert broken.status_code == 200 and "That page link is not valid" in html
    assert re.findall(r'<a href="/servers/\d+">([^<]+)</a>', html) == names


def test_api_pages_follow_cursors_and_refuse_bad_ones(app: Any, make_user: Any, client: Any) -> None:
    admin = make_user("platform_admin", "platform")
    token = create_api_token(None, admin, "paging")
    db.session.commit()
    seed_lists(users=20, servers=130)
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[int] = []
    body = client.get("/api/v1/servers?scope=all&sort=size&dir=asc", headers=headers).get_json()
    assert body["total"] > 100 and body["total_is_lower_bound"] is False and body["prev"] is None
    while True:
        seen += [s["id"] for s in body["items"]]
        if not body["next"]:
            break
        body = client.get(f"/api/v1/servers?scope=all&sort=size&dir=asc&after={body['next']}",
                          headers=headers).get_json()
    assert len(seen) == len(set(seen)) == body["total"]
    bad = client.get("/api/v1/servers?scope=all&after=%%%", headers=headers)
    assert bad.status_code == 400 and "page link is not valid" in bad.get_json()["error"]
    both = client.get("/api/v1/requests?after=x&before=y", headers=headers)
    assert both.status_code == 400 and "one of after, before or last" in both.get_json()["error"]


def test_people_page_builds_its_forms_once(app: Any, make_user: Any, client: Any, auth: Any) -> None:
    admin = make_user("platform_admin", "platform")
    seed_lists(users=120, servers=0)
    auth.sign_in(admin.email)
    html = client.get("/admin/users").get_data(as_text=True)
    rows = html.count('-role" name="u')
    assert rows >= 49  # 50 people a page; one of them may be the admin, who gets no form for themself
    # Every row's forms carry the one CSRF token of the page, and the role change still works.
    tokens = set(re.findall(r'name="(?:u\d+-)?csrf_token" value="([^"]+)"', html))
    assert len(tokens) == 1
    person_id = int(re.search(r'name="u(\d+)-role"', html).group(1))  # type: ignore[union-attr]
    token = tokens.pop()
    changed = client.post(f"/admin/users/{person_id}/role",
                          data={f"u{person_id}-csrf_token": token, f"u{person_id}-role": "tenant_admin"})
    assert changed.status_code == 302
    assert db.session.get(User, person_id).role == "tenant_admin"  # type: ignore[union-attr]
    assert len(html) < 90_000

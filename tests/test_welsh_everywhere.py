"""Welsh everywhere: with Welsh chosen, no page shows English, and neither do the sentences the
services raise, the plain words of a failed order nor its progress steps.

Every GET page of the URL map (so a page added later is walked too) is visited by each role with
Welsh chosen, its ids pointing at objects that role may see; the visible text (no scripts or
styles, nothing marked lang="en" such as the switcher's "English") must hold no English word
(see tests/english_words.py). Then typical mistakes are made through the forms and the
sentence flashed back must be Welsh, and the English the same mistakes give in English is checked
as well, so the test cannot pass by showing nothing.
"""
from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.extensions import db
from cloud_portal.i18n import in_language
from cloud_portal.provisioning import leases, lifecycle, timed
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import requests as orders
from cloud_portal.provisioning.plain_words import plain_words
from cloud_portal.quotas import limits as quota_limits
from cloud_portal.tenants.service import get_tenant_by_slug
from cloud_portal.timeutil import utcnow
from cloud_portal.unit_of_work import discard_pending
from tests.english_words import english_words_left
from tests.helpers import rule_paths, server_seen_active, signed_in_client, utc

#: Pages that are not for people (machine answers) or need a sign-in service of their own.
NOT_PAGES = {"/healthz", "/metrics", "/static/<path:filename>", "/sign-in/sso/<slug>",
             "/sign-in/sso/<slug>/callback", "/requests/<int:request_id>/progress.json",
             "/sign-in/second-factor"}
#: Query strings that show another view of a page (each walked as well).
VIEWS = {"/requests": ["?scope=tenant"], "/servers": ["?scope=tenant", "?scope=all"],
         "/admin/quotas/increases": ["?scope=decided"], "/finance/": ["?month=2026-11"]}
ROLES = {"member": "torfaen", "tenant_admin": "torfaen", "platform_admin": "platform", "finance": "platform"}
#: Names people gave (accounts, servers) that are neither language.
PERSON_NAMES = {"member": "Siân Prys", "tenant_admin": "Dafydd ap Gwilym", "platform_admin": "Nia Ben Aur",
                "finance": "Gwenllian Rhys"}


class _VisibleText(HTMLParser):
    """The text a person sees: text nodes and the labels of controls, without scripts, styles,
    code and whatever is marked as another language than the page's (the switcher's lang="en")."""

    _VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # tags whose content is skipped, innermost last
        self._page_language: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self._page_language = values.get("lang")
            return
        if not self._skip:
            for name in ("placeholder", "aria-label", "title", "alt"):
                if values.get(name):
                    self.parts.append(str(values[name]))
            if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
                self.parts.append(str(values["value"]))
        if tag in self._VOID:
            return
        # Code (the audit log's before/after values, commands) is the same in any language.
        other_language = values.get("lang") not in (None, self._page_language)
        if self._skip or tag in ("script", "style", "code") or other_language:
            self._skip.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The visible text of a page (see _VisibleText), one space between pieces."""
    parser = _VisibleText()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()


def _context(text: str, word: str) -> str:
    """``word`` with a few words either side, to find where it came from."""
    match = re.search(rf"\b{re.escape(word)}\b", text)
    return text[max(0, match.start() - 40):match.end() + 40] if match else word


def welsh_client(app: Any, email: str) -> Any:
    client = signed_in_client(app, email)
    client.post("/language", data={"lang": "cy", "next": "/"})
    return client


def flashed(html: str) -> list[str]:
    """The texts of the flash messages on a page."""
    return [visible_text(m) for m in re.findall(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', html, re.S)]


@pytest.fixture
def people(app: Any, make_user: Any) -> dict[str, Any]:
    found = {}
    for role, tenant in ROLES.items():
        user = make_user(role, tenant)
        user.display_name = PERSON_NAMES[role]
        found[role] = user
    db.session.commit()
    return found


@pytest.fixture
def failed_order(people: dict[str, Any]) -> m.ServerRequest:
    """An order whose provisioning failed as the worker records it: the playbook's failed task,
    the portal's failure step with the plain words, the request failed with them as its reason."""
    member = people["member"]
    request = orders.submit_request(member, kind="vm", catalog_key="small", image_key="debian-12",
                                    data_hall="local-government", name="cy-methu-1")
    db.session.commit()
    discard_pending()
    job = leases.latest_job(request_id=request.id)
    technical = "No valid host was found. There are not enough hosts available."
    lifecycle.advance(request, lifecycle.START)
    leases.step(job, "Boot server", "started")
    leases.step(job, "Boot server", "failed", technical)
    words = plain_words(technical)
    leases.step(job, "Provisioning failed", "failed", words)
    lifecycle.advance(request, lifecycle.FAIL)
    request.reason = words
    leases.finish(job, m.JOB_FAILED, f"{words}\n\n{technical}")
    db.session.commit()
    return request


def test_the_detector_finds_english_and_passes_welsh() -> None:
    assert english_words_left("Your server is running. Choose a larger size.") == [
        "Your", "server", "running", "Choose", "size"]
    # Names, units, addresses and ids pass; a word inside an id is not a word.
    assert english_words_left("OpenStack, 4 vCPUs, 20 GB, support@example.cymru, cc.small, web-01") == []
    welsh = ("Mae'r gweinydd hwn ar waith. Dim ond gweinyddwyr all weld y cais; mae gan Gyngor Torfaen 3 o 10 "
             "vCPUs ar ôl a 20 GB o ddisg yn OpenStack. Anfonwch e-bost at siân@example.cymru am cc.small.")
    assert english_words_left(welsh) == []


def _more_to_show(people: dict[str, Any], server: m.Server) -> None:
    """What makes pages longer: office hours and an expiry on the server, an order waiting for
    approval, one rejected with a reason, and quota-increase requests open and declined."""
    from cloud_portal.quotas.increases import create_increase, decline_increase
    member, admin = people["member"], people["tenant_admin"]
    timed.set_schedule(member, server.id, days=["mon", "tue", "wed"], stop="19:00", start="07:30",
                       timezone="Europe/London")
    timed.extend_lease(member, server.id, utcnow().date() + timedelta(days=20))
    get_tenant_by_slug("torfaen").approval_vcpus_over = 0  # every order waits for approval
    for who, name in ((member, "cy-aros-1"), (admin, "cy-gwrthod-1")):
        orders.submit_request(who, kind="vm", catalog_key="small", image_key="debian-12",
                              data_hall="local-government", name=name)
    db.session.commit()
    discard_pending()
    rejected = db.session.scalar(select(m.ServerRequest).where(m.ServerRequest.name == "cy-gwrthod-1"))
    orders.reject(admin, rejected.id, "Gormod o gost y mis hwn")
    create_increase(member, {"instances": 2}, "Cyfrif etholiad")
    declined = create_increase(member, {"vcpus": 4}, "Profi")
    db.session.commit()
    decline_increase(people["platform_admin"], declined.id, "Dim lle eleni")
    db.session.commit()


def test_every_page_is_welsh_for_every_role(app: Any, people: dict[str, Any], failed_order: Any) -> None:
    server = server_seen_active(people["member"], "cy-gweinydd-1", utc("2026-11-03T09:00:00"))
    db.session.commit()
    _more_to_show(people, server)
    ids = {"server_id": server.id, "request_id": failed_order.id, "user_id": people["member"].id}
    walked: dict[str, int] = {}
    english: list[tuple[str, str, list[str]]] = []
    for role, user in people.items():
        client = welsh_client(app, user.email)
        for rule in app.url_map.iter_rules():
            if rule.rule in NOT_PAGES or rule.rule.startswith("/api/") or "GET" not in (rule.methods or ()):
                continue
            for path in rule_paths(rule, **ids):
                for view in ["", *VIEWS.get(rule.rule, [])]:
                    response = client.get(path + view)
                    assert response.status_code < 500, (role, path + view)
                    if response.status_code in (301, 302) or "text/html" not in response.content_type:
                        continue
                    page = response.get_data(as_text=True)
                    assert 'lang="cy"' in page, (role, path + view)
                    walked[role] = walked.get(role, 0) + 1
                    text = visible_text(page)
                    left = english_words_left(text)
                    if left:
                        english.append((role, path + view, [_context(text, word) for word in sorted(set(left))]))
    # The walk saw the longer pages: the waiting order, the office hours, the quota requests.
    admin = welsh_client(app, people["tenant_admin"].email)
    assert "cy-aros-1" in admin.get("/approvals").get_data(as_text=True)
    assert "19:00" in admin.get(f"/servers/{server.id}").get_data(as_text=True)
    assert "Dim lle eleni" in welsh_client(app, people["member"].email).get("/quotas/increases").get_data(as_text=True)
    assert not english, "English left on Welsh pages:\n" + "\n".join(f"{r} {p}: {w}" for r, p, w in english)
    # Each role saw its pages, not just error pages: a member fewer than the administrators.
    assert walked["member"] >= 10 and walked["tenant_admin"] > walked["member"], walked
    assert walked["platform_admin"] >= 20 and walked["finance"] >= 10, walked


def test_a_failed_order_reads_in_welsh(app: Any, people: dict[str, Any], failed_order: Any) -> None:
    client = welsh_client(app, people["member"].email)
    page = client.get(f"/requests/{failed_order.id}").get_data(as_text=True)
    text = visible_text(page)
    assert "Nid oes lle i'r gweinydd hwn yn y neuadd ddata a ddewiswyd ar hyn o bryd" in text  # the plain words
    assert "Cychwyn y gweinydd" in text and "Methodd y darparu" in text  # the step names
    assert "wedi methu" in text and "wedi dechrau" in text  # the step statuses
    assert english_words_left(text) == []
    progress = client.get(f"/requests/{failed_order.id}/progress.json").get_json()
    assert progress["reason"].startswith("Nid oes lle i'r gweinydd hwn")
    assert [s["task_label"] for s in progress["steps"]][:1] == ["Cychwyn y gweinydd"]
    assert [s["task"] for s in progress["steps"]][:1] == ["Boot server"]  # what scripts match on
    # The same request in English, as stored.
    english = signed_in_client(app, people["member"].email).get(f"/requests/{failed_order.id}")
    english_text = visible_text(english.get_data(as_text=True))
    assert "There is no room for this server in the chosen data hall right now." in english_text
    assert "Boot server" in english_text and "Provisioning failed" in english_text


def _mistakes(app: Any, people: dict[str, Any], server: m.Server, client_for: Any) -> dict[str, list[str]]:
    """Typical mistakes made through the forms; the flash messages each one brings back."""
    member, admin = people["member"], people["tenant_admin"]
    said: dict[str, list[str]] = {}
    client = client_for(member.email)
    page = client.post("/requests/new/vm", data={"name": "-drwg-", "catalog_key": "small", "image_key": "debian-12",
                                                 "data_hall": "local-government"})
    said["bad name"] = flashed(page.get_data(as_text=True))
    page = client.post("/requests/new/vm", data={"name": "cy-heddlu-1", "catalog_key": "small",
                                                 "image_key": "debian-12", "data_hall": "police"})
    said["wrong hall"] = flashed(page.get_data(as_text=True))
    page = client.post(f"/servers/{server.id}/extend", data={"until": "2020-01-31"}, follow_redirects=True)
    said["past expiry"] = flashed(page.get_data(as_text=True))
    page = client.post(f"/servers/{server.id}/start", data={}, follow_redirects=True)
    said["wrong state"] = flashed(page.get_data(as_text=True))
    page = client.post("/quotas/increase/new", data={"reason": "Mae angen mwy"}, follow_redirects=True)
    said["nothing asked"] = flashed(page.get_data(as_text=True))
    admin_client = client_for(admin.email)
    page = admin_client.post("/admin/users", data={"email": member.email, "display_name": "Rhywun",
                                                   "role": "member", "tenant": member.tenant_id})
    said["existing account"] = flashed(page.get_data(as_text=True))
    page = admin_client.post(f"/servers/{server.id}/transfer", data={"to_email": "neb@example.cymru"},
                             follow_redirects=True)
    said["no such person"] = flashed(page.get_data(as_text=True))
    # Over quota: the tenant's limit for servers is what it uses now.
    torfaen = get_tenant_by_slug("torfaen")
    with in_language("en"):
        quota_limits.set_limits(people["platform_admin"], torfaen,
                                {"instances": 1, "vcpus": 100, "ram_mib": 100000, "disk_gb": 1000, "desktops": 10},
                                {}, confirm_below_usage=True)
    db.session.commit()
    page = client.post("/requests/new/vm", data={"name": "cy-gormod-1", "catalog_key": "small",
                                                 "image_key": "debian-12", "data_hall": "local-government"})
    said["over quota"] = flashed(page.get_data(as_text=True))
    return said


def test_service_errors_are_flashed_in_welsh(app: Any, people: dict[str, Any]) -> None:
    server = server_seen_active(people["member"], "cy-gweinydd-2", utc("2026-11-03T09:00:00"))
    db.session.commit()
    said = _mistakes(app, people, server, lambda email: welsh_client(app, email))
    expected = {
        "bad name": "Ni chaiff yr enw ddechrau na gorffen â chysylltnod.",
        "wrong hall": "Ni chaiff Cyngor Bwrdeistref Sirol Torfaen osod gweinyddion yn y neuadd ddata 'police'",
        "past expiry": "Mae'r dyddiad dod i ben 31 Ionawr 2020 wedi mynd heibio; dewiswch ddiwrnod diweddarach.",
        "wrong state": "Ni ellir gofyn i weinydd sydd ar waith dechrau.",
        "nothing asked": "Dywedwch faint yn rhagor sydd ei angen arnoch o un adnodd o leiaf.",
        "existing account": "Mae cyfrif ar gyfer",
        "no such person": "Nid oes neb â'r cyfeiriad neb@example.cymru yn perthyn i Cyngor Bwrdeistref Sirol Torfaen",
        "over quota": "Mae gan Cyngor Bwrdeistref Sirol Torfaen 0 o 1 enghreifftiau ar ôl; mae ar y cais hwn angen 1.",
    }
    for mistake, sentence in expected.items():
        assert any(sentence in message for message in said[mistake]), (mistake, said[mistake])
        for message in said[mistake]:
            assert english_words_left(message) == [], (mistake, message)


def test_service_errors_stay_english_in_english(app: Any, people: dict[str, Any]) -> None:
    server = server_seen_active(people["member"], "cy-gweinydd-3", utc("2026-11-03T09:00:00"))
    db.session.commit()
    said = _mistakes(app, people, server, lambda email: signed_in_client(app, email))
    assert "The name may not start or end with a hyphen." in said["bad name"]
    assert "The expiry date 31 January 2020 has passed; choose a later day." in said["past expiry"]
    assert "A server that is active cannot be asked to start." in said["wrong state"]
    assert any("Torfaen County Borough Council has 0 of 1 instances left; this request needs 1." in message
               for message in said["over quota"]), said["over quota"]


def test_services_called_outside_a_request_speak_english(app: Any, people: dict[str, Any]) -> None:
    from cloud_portal.errors import InvalidInput
    from cloud_portal.provisioning.validation import validate_hostname
    with pytest.raises(InvalidInput, match="The name may not start or end with a hyphen."):
        validate_hostname("-x-")
    with in_language("cy"), pytest.raises(InvalidInput, match="Ni chaiff yr enw ddechrau"):
        validate_hostname("-x-")


def test_the_api_answers_in_the_language_asked_for(app: Any, people: dict[str, Any]) -> None:
    from cloud_portal.accounts.service import create_api_token
    token = create_api_token(None, people["member"], "sgript")
    db.session.commit()
    payload = {"kind": "vm", "size": "small", "image": "debian-12", "data_hall": "local-government", "name": "-x-"}
    bearer = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    english = client.post("/api/v1/requests", json=payload, headers=bearer)
    welsh = client.post("/api/v1/requests", json=payload, headers={**bearer, "Accept-Language": "cy"})
    assert english.status_code == welsh.status_code == 400
    assert english.get_json()["error"] == "The name may not start or end with a hyphen."
    assert welsh.get_json()["error"] == "Ni chaiff yr enw ddechrau na gorffen â chysylltnod."


def test_the_api_s_own_refusals_answer_in_the_language_asked_for(app: Any, people: dict[str, Any]) -> None:
    """Not only the services' errors: the token check, a value outside its choices, an unknown
    address and a wrong method, with their codes the same in both languages."""
    from cloud_portal.accounts.service import create_api_token
    token = create_api_token(None, people["member"], "sgript")
    db.session.commit()
    client = app.test_client()
    calls = [("GET", "/api/v1/servers", {}),                                           # no token
             ("GET", "/api/v1/servers?scope=everything", {"Authorization": f"Bearer {token}"}),
             ("GET", "/api/v1/no-such-thing", {"Authorization": f"Bearer {token}"}),
             ("DELETE", "/api/v1/catalog", {"Authorization": f"Bearer {token}"}),
             ("POST", "/api/v1/requests", {"Authorization": f"Bearer {token}"})]    # a name too long
    too_long = {"kind": "vm", "size": "small", "image": "debian-12", "data_hall": "local-government", "name": "n" * 70}
    for method, path, headers in calls:
        body = too_long if method == "POST" else None
        english = client.open(path, method=method, headers=headers, json=body)
        welsh = client.open(path, method=method, headers={**headers, "Accept-Language": "cy"}, json=body)
        assert english.status_code == welsh.status_code >= 400, path
        assert english.get_json()["code"] == welsh.get_json()["code"], path
        assert english_words_left(english.get_json()["error"]), (path, english.get_json())
        http_methods = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE")  # protocol words, as they are
        assert not english_words_left(welsh.get_json()["error"], also_allowed=http_methods), (path, welsh.get_json())


def test_pages_before_signing_in_and_error_pages_are_welsh(app: Any, people: dict[str, Any]) -> None:
    client = app.test_client()
    client.post("/language", data={"lang": "cy", "next": "/sign-in"})
    pages = [client.get("/sign-in"), client.post("/sign-in", data={"email": people["member"].email,
                                                                    "password": "anghywir-iawn-yn-wir"}),
             client.get("/dim-byd-yma")]
    member = welsh_client(app, people["member"].email)
    pages += [member.get("/admin/users"), member.get("/servers/999999")]
    for page in pages:
        html = page.get_data(as_text=True)
        assert 'lang="cy"' in html, page.status_code
        assert english_words_left(visible_text(html)) == [], (page.status_code, visible_text(html)[:300])
    assert [p.status_code for p in pages][2:] == [404, 403, 404]

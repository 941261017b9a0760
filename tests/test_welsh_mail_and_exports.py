"""E-mails in the recipient's language (bilingual, Welsh first, when it is not known) and exports
in the language of the person downloading them."""
from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from openpyxl import load_workbook

from cloud_portal.accounts import service as accounts
from cloud_portal.billing import exports
from cloud_portal.extensions import db
from cloud_portal.i18n import for_recipient, in_language
from tests.helpers import create_user, server_seen_active, sign_in, signed_in_client, utc
from tests.test_api_tokens import mail_app  # noqa: F401  (an app sending to the local SMTP server)
from tests.test_quota_increases import Inbox, smtp  # noqa: F401  (the local SMTP server fixture)


def test_the_language_a_person_picks_is_remembered(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    assert member.language is None
    client = signed_in_client(app, member.email)
    client.post("/language", data={"lang": "cy", "next": "/"})
    db.session.expire_all()
    assert member.language == "cy"
    client.post("/language", data={"lang": "en", "next": "/"})
    db.session.expire_all()
    assert member.language == "en"
    # Chosen on the sign-in page, before signing in: kept when they sign in.
    other = make_user("member", "torfaen")
    fresh = app.test_client()
    fresh.post("/language", data={"lang": "cy", "next": "/sign-in"})
    sign_in(fresh, other.email)
    db.session.expire_all()
    assert other.language == "cy"


def test_token_warnings_in_each_persons_language(mail_app: Any, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    people = {}
    for language in ("cy", "en", None):
        person = create_user("member", "torfaen", email=f"tocyn-{language or 'unknown'}@torfaen.example")
        person.language = language
        accounts.create_api_token(person, person, "wrth-gefn", days=3)
        people[language] = person
    db.session.commit()
    assert accounts.warn_expiring_tokens(dict(mail_app.config)) == 3
    messages = {m["To"]: m for m in smtp[0].wait(3)}
    assert len(messages) == 3

    def text(person: Any) -> tuple[str, str]:
        message = messages[person.email]
        return " ".join(str(message["Subject"]).split()), message.get_payload(decode=True).decode()

    subject, body = text(people["cy"])
    assert subject.startswith("Bydd eich tocyn API Cwmwl Cymru 'wrth-gefn' yn dod i ben ar")
    assert "Gwnewch un newydd ar dudalen tocynnau API y porth" in body and "Make a new one" not in body
    subject, body = text(people["en"])
    assert subject.startswith("Your Cwmwl Cymru API token 'wrth-gefn' expires on")
    assert "Make a new one on the portal's API tokens page" in body and "Gwnewch" not in body
    subject, body = text(people[None])  # not known: both, Welsh first
    assert subject.startswith("Bydd eich tocyn API") and " / Your Cwmwl Cymru API token" in subject
    assert body.index("Gwnewch un newydd") < body.index("----- English -----") < body.index("Make a new one")


def test_for_recipient_outside_an_app_is_english_once() -> None:
    assert for_recipient(None, lambda: ("Subject", "Body")) == ("Subject", "Body")


@pytest.fixture
def billed(app: Any, make_user: Any) -> dict[str, Any]:
    member = make_user("member", "torfaen")
    finance = make_user("finance", "platform")
    with in_language("en"):
        server_seen_active(member, "cy-bil-1", utc("2026-11-03T09:00:00"))
    db.session.commit()
    return {"member": member, "finance": finance}


def _download(client: Any, fmt: str) -> bytes:
    response = client.get(f"/finance/export?month=2026-11&format={fmt}&tenant=torfaen")
    assert response.status_code == 200, response.status_code
    return bytes(response.data)


def test_exports_are_headed_in_the_downloaders_language(app: Any, billed: dict[str, Any]) -> None:
    english = signed_in_client(app, billed["finance"].email)
    welsh = signed_in_client(app, billed["finance"].email)
    welsh.post("/language", data={"lang": "cy", "next": "/"})

    english_rows = list(csv.reader(io.StringIO(_download(english, "csv").decode())))
    welsh_rows = list(csv.reader(io.StringIO(_download(welsh, "csv").decode())))
    assert english_rows[0] == list(exports.COLUMNS)
    assert welsh_rows[0][:5] == ["mis", "sefydliad", "canolfan_gostau", "e-bost", "enw"]
    assert welsh_rows[1:] == english_rows[1:]  # the lines, numbers and money as they are
    assert len(english_rows) > 1

    sheet = load_workbook(io.BytesIO(_download(welsh, "xlsx"))).active
    assert [c.value for c in sheet[1]][-2:] == ["swm_gbp", "yn_addasu_mis"]
    assert sheet.cell(sheet.max_row, 1).value == "Cyfanswm"
    sheet = load_workbook(io.BytesIO(_download(english, "xlsx"))).active
    assert [c.value for c in sheet[1]] == list(exports.COLUMNS) and sheet.cell(sheet.max_row, 1).value == "Total"

    journal = _download(welsh, "journal").decode()
    assert journal.startswith("cyfnod,canolfan_gostau,swm_gbp,disgrifiad")
    assert "Taliadau cwmwl preifat Cwmwl Cymru 2026-11" in journal
    assert _download(english, "journal").decode().startswith("period,cost_centre,amount_gbp,description")


def test_the_pdf_statement_is_in_the_downloaders_language(app: Any, billed: dict[str, Any]) -> None:
    from cloud_portal.tenants.service import get_tenant_by_slug
    torfaen = get_tenant_by_slug("torfaen").id
    with app.test_request_context(headers={"Accept-Language": "cy"}):
        welsh = exports.statement_html("2026-11", tenant_id=torfaen)
    with app.test_request_context():
        english = exports.statement_html("2026-11", tenant_id=torfaen)
    assert "Cwmwl preifat Cwmwl Cymru: datganiad misol" in welsh and 'lang="cy"' in welsh
    assert "Cyngor Bwrdeistref Sirol Torfaen" in welsh and "GB-misoedd" in welsh
    assert "monthly statement" not in welsh
    assert "Cwmwl Cymru private cloud: monthly statement" in english and "GB-months" in english
    # Money is written the same way in both.
    amounts = re.compile(r"£[\d,]+\.\d\d|>[\d,]+\.\d+<")
    assert amounts.findall(english) and amounts.findall(welsh) == amounts.findall(english)
    # The PDF itself is made from that HTML, in the page's language.
    client = signed_in_client(app, billed["finance"].email)
    client.post("/language", data={"lang": "cy", "next": "/"})
    assert _download(client, "pdf").startswith(b"%PDF")

"""Billing exports (CSV, XLSX, PDF, recharge journal) of a closed month worked out by hand.

Rates (tenants.yaml): vcpu_hour £0.0150, ram_gb_hour £0.0050, disk_gb_month £0.0400; a small VM
is 1 vCPU, 2 GB RAM, 20 GB disk. November 2026 in Europe/London is GMT: 30 days, 720 hours.

- Alys (Torfaen): small VM 1–11 November, 240 h: 3.60 + 2.40 + 20 × 10/30 × 0.04 = 0.27 → 6.27
- Bryn (Torfaen): small VM from 16 November, still running at the month end, 360 h:
  5.40 + 3.60 + 0.40 → 9.40
- Ceri (Monmouthshire): small VM from 21 November, 240 h → 6.27
Torfaen 15.67, Monmouthshire 6.27, everyone 21.94.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner

from cloud_portal.billing import exports, months
from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import servers
from cloud_portal.tenants.service import get_tenant_by_slug
from cloud_portal.timeutil import frozen_at
from tests.conftest import TENANTS_FILE
from tests.helpers import server_seen_active, utc

MONTH = "2026-11"






@pytest.fixture
def november(make_user: Any) -> dict[str, Any]:
    """The scenario above, with November closed."""
    alys = make_user("member", "torfaen", "alys.wyn@torfaen.gov.uk")
    bryn = make_user("member", "torfaen", "bryn@torfaen.gov.uk")
    ceri = make_user("member", "monmouthshire", "ceri@monmouthshire.gov.uk")
    alys.display_name, bryn.display_name, ceri.display_name = "Alys Ŵyn", "=Bryn Jones", "Ceri Lewis"
    db.session.commit()
    aye = server_seen_active(alys, "aye", utc("2026-11-01T00:00:00"))
    servers.mark_deleted(aye, "deleted by its owner", at=utc("2026-11-11T00:00:00"))
    bee = server_seen_active(bryn, "bee", utc("2026-11-16T00:00:00"))
    cee = server_seen_active(ceri, "cee", utc("2026-11-21T00:00:00"))
    servers.mark_deleted(cee, "deleted by its owner", at=utc("2026-12-01T00:00:00"))
    with frozen_at(utc("2026-12-01T00:00:10")):
        db.session.add(m.ReconcileRun())
        db.session.commit()
        months.close_month(MONTH, "test")
    return {"alys": alys, "bryn": bryn, "ceri": ceri, "aye": aye, "bee": bee, "cee": cee,
            "torfaen": get_tenant_by_slug("torfaen"), "monmouthshire": get_tenant_by_slug("monmouthshire")}


def _statement_total(**scope: Any) -> Decimal:
    return sum((row.amount for row in months.statement(MONTH, **scope)[1]), Decimal("0.00"))


def _csv(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_csv_per_tenant(november: dict[str, Any]) -> None:
    torfaen = november["torfaen"]
    name, mimetype, body = exports.render(MONTH, "csv", tenant_id=torfaen.id)
    assert (name, mimetype) == ("cwmwl-2026-11-torfaen.csv", "text/csv; charset=utf-8")
    rows = _csv(body)
    assert list(rows[0]) == list(exports.COLUMNS)
    assert {(r["email"], r["server_name"], r["component"]): r["amount_gbp"] for r in rows} == {
        ("alys.wyn@torfaen.gov.uk", "aye", "vcpu"): "3.60", ("alys.wyn@torfaen.gov.uk", "aye", "ram"): "2.40",
        ("alys.wyn@torfaen.gov.uk", "aye", "disk"): "0.27",
        ("bryn@torfaen.gov.uk", "bee", "vcpu"): "5.40", ("bryn@torfaen.gov.uk", "bee", "ram"): "3.60",
        ("bryn@torfaen.gov.uk", "bee", "disk"): "0.40"}
    assert {r["month"] for r in rows} == {MONTH}
    assert {r["tenant"] for r in rows} == {"torfaen"} and {r["cost_centre"] for r in rows} == {"TOR-IT-4410"}
    alys_vcpu = next(r for r in rows if r["server_name"] == "aye" and r["component"] == "vcpu")
    assert alys_vcpu["name"] == "Alys Ŵyn" and alys_vcpu["server_id"] == str(november["aye"].id)
    assert (alys_vcpu["quantity"], alys_vcpu["unit"], alys_vcpu["rate_gbp"]) == ("240.000000", "vCPU-hours",
                                                                                 "0.01500")
    assert alys_vcpu["rate_from"] == "2000-01-01" and alys_vcpu["adjusts_month"] == ""
    # A name a spreadsheet would run as a formula is written as text.
    assert {r["name"] for r in rows if r["email"].startswith("bryn")} == {"'=Bryn Jones"}
    total = sum((Decimal(r["amount_gbp"]) for r in rows), Decimal("0.00"))
    assert total == _statement_total(tenant_id=torfaen.id) == Decimal("15.67")


def test_csv_everyone_and_one_person(november: dict[str, Any]) -> None:
    name, _, body = exports.render(MONTH, "csv")
    rows = _csv(body)
    assert name == "cwmwl-2026-11.csv" and len(rows) == 9
    assert sum(Decimal(r["amount_gbp"]) for r in rows) == _statement_total() == Decimal("21.94")
    name, _, body = exports.render(MONTH, "csv", owner_id=november["bryn"].id)
    assert name == "cwmwl-2026-11-bryn.csv"
    assert {r["email"] for r in _csv(body)} == {"bryn@torfaen.gov.uk"}
    assert sum(Decimal(r["amount_gbp"]) for r in _csv(body)) == Decimal("9.40")


def test_xlsx_has_numbers_and_a_total(november: dict[str, Any]) -> None:
    name, mimetype, body = exports.render(MONTH, "xlsx", owner_id=november["alys"].id)
    assert name == "cwmwl-2026-11-alys.wyn.xlsx" and mimetype.endswith("spreadsheetml.sheet")
    name, _, body = exports.render(MONTH, "xlsx", tenant_id=november["torfaen"].id)
    assert name == "cwmwl-2026-11-torfaen.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    assert sheet.title == MONTH
    rows = list(sheet.iter_rows())
    header, lines, total = rows[0], rows[1:-1], rows[-1]
    assert [c.value for c in header] == list(exports.COLUMNS)
    amount = exports.COLUMNS.index("amount_gbp")
    quantity = exports.COLUMNS.index("quantity")
    assert len(lines) == 6
    for row in lines:
        assert row[amount].data_type == "n" and isinstance(row[amount].value, (int, float))
        assert row[amount].number_format.endswith("0.00") and not row[amount].number_format.endswith("000")
        assert row[quantity].data_type == "n"
    assert total[0].value == "Total" and total[amount].data_type == "n"
    assert total[amount].number_format.endswith("0.00")
    assert Decimal(str(total[amount].value)) == _statement_total(tenant_id=november["torfaen"].id)
    assert sum(Decimal(str(row[amount].value)) for row in lines) == Decimal("15.67")
    names = [row[exports.COLUMNS.index("name")] for row in lines]
    assert {c.value for c in names} == {"Alys Ŵyn", "=Bryn Jones"} and {c.data_type for c in names} == {"s"}


def _streams(pdf: bytes) -> bytes:
    """Every stream of ``pdf`` inflated (where it is deflated) and joined, to look for plain text."""
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(match.group(1)))
        except zlib.error:
            out.append(match.group(1))
    return b"\n".join(out) + pdf


def test_pdf_statement(november: dict[str, Any]) -> None:
    torfaen = november["torfaen"]
    name, mimetype, body = exports.render(MONTH, "pdf", tenant_id=torfaen.id)
    assert (name, mimetype) == ("cwmwl-2026-11-torfaen.pdf", "application/pdf")
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF") and len(body) > 5000
    inflated = _streams(body)
    # Fixed dates (the month's end) and identifier, never the clock.
    assert b"D:20261201000000Z" in inflated and b"/ID" in inflated
    # Read back: the text a person sees in the PDF.
    from pypdf import PdfReader
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)
    for expected in ("Torfaen County Borough Council", "TOR-IT-4410", "2026-11", "alys.wyn@torfaen.gov.uk",
                     "£6.27", "£9.40", "£15.67"):
        assert expected in text, (expected, text[:500])
    # And what the PDF is made from, the same template.
    html = exports.statement_html(MONTH, tenant_id=torfaen.id)
    for text in ("Torfaen County Borough Council", "TOR-IT-4410", "2026-11", "Closed: final charges",
                 "alys.wyn@torfaen.gov.uk", "Alys Ŵyn", "£6.27", "£9.40", "£15.67", "aye (", "bee ("):
        assert text in html, text
    assert "=Bryn Jones" in html and "month to date" not in html.lower()
    with pytest.raises(InvalidInput, match="one tenant"):
        exports.render(MONTH, "pdf")


def test_pdf_of_an_open_month(november: dict[str, Any]) -> None:
    with frozen_at(utc("2026-12-10T12:00:00")):
        html = exports.statement_html("2026-12", tenant_id=november["torfaen"].id)
        _, _, body = exports.render("2026-12", "pdf", tenant_id=november["torfaen"].id)
    # Bryn's VM runs on: 9.5 days of December so far.
    assert "Open: month to date, as at 2026-12-10 12:00 GMT" in html and "bryn@torfaen.gov.uk" in html
    assert body.startswith(b"%PDF-")


def test_journal_one_line_per_cost_centre(november: dict[str, Any]) -> None:
    name, mimetype, body = exports.render(MONTH, "journal")
    assert (name, mimetype) == ("cwmwl-2026-11-journal.csv", "text/csv; charset=utf-8")
    assert body.decode() == (
        "period,cost_centre,amount_gbp,description\r\n"
        '2026-11,MON-ICT-2210,6.27,"Cwmwl Cymru private cloud charges 2026-11, Monmouthshire County Council"\r\n'
        '2026-11,TOR-IT-4410,15.67,"Cwmwl Cymru private cloud charges 2026-11, Torfaen County Borough Council"\r\n')
    # Tenants without charges have no line; a month without any charges has only the header.
    assert exports.render("2026-10", "journal")[2] == b"period,cost_centre,amount_gbp,description\r\n"


def test_closed_month_exports_are_the_same_bytes_every_time(november: dict[str, Any]) -> None:
    torfaen = november["torfaen"].id
    scopes = {"csv": {}, "xlsx": {}, "journal": {}, "pdf": {"tenant_id": torfaen}}
    with frozen_at(utc("2027-01-05T09:00:00")):
        first = {fmt: exports.render(MONTH, fmt, **scope) for fmt, scope in scopes.items()}
    with frozen_at(utc("2027-06-30T17:31:07")):
        second = {fmt: exports.render(MONTH, fmt, **scope) for fmt, scope in scopes.items()}
    for fmt in scopes:
        assert first[fmt] == second[fmt], fmt
    # The XLSX carries the month's end, not the clock, in its properties and every zip entry.
    with zipfile.ZipFile(io.BytesIO(first["xlsx"][2])) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2026, 12, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
    assert core.count("2026-12-01T00:00:00Z") == 2
    properties = openpyxl.load_workbook(io.BytesIO(first["xlsx"][2])).properties
    assert properties.created == properties.modified == datetime(2026, 12, 1)


def test_bad_format_and_month(november: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="'docx' is not an export format; choose csv, xlsx, pdf or journal"):
        exports.render(MONTH, "docx")
    with pytest.raises(InvalidInput, match="not a month"):
        exports.render("2026-13", "csv")
    with pytest.raises(InvalidInput, match="not a month"):
        exports.render("November", "journal")


def test_names_are_looked_up_in_bulk(november: dict[str, Any], count_queries: Any) -> None:
    with count_queries() as everyone:
        exports.render(MONTH, "csv")
    with count_queries() as one:
        exports.render(MONTH, "csv", owner_id=november["ceri"].id)
    # 9 lines vs 3: the same handful of queries (month closed?, lines, tenants, people, servers, cost centres).
    assert everyone.count <= one.count <= 8


@pytest.fixture
def cli(november: dict[str, Any], database_url: str, tmp_path: Path) -> Any:
    from cloud_portal.cli import main
    env = {"CLOUD_PORTAL_INSTANCE_PATH": str(tmp_path / "instance"), "CLOUD_PORTAL_DATABASE_URL": database_url,
           "CLOUD_PORTAL_TENANTS_FILE": str(TENANTS_FILE)}

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["billing", "export", *args], env=env)
    return run


def test_cli_export(cli: Any, tmp_path: Path) -> None:
    result = cli("--month", MONTH, "--format", "journal")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == exports.render(MONTH, "journal")[2]
    result = cli("--month", MONTH, "--format", "csv", "--tenant", "torfaen", "--user", "bryn@torfaen.gov.uk")
    assert result.exit_code == 0, result.output
    assert {r["email"] for r in _csv(result.stdout_bytes)} == {"bryn@torfaen.gov.uk"}
    out = tmp_path / "torfaen.pdf"
    result = cli("--month", MONTH, "--format", "pdf", "--tenant", "torfaen", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == exports.render(MONTH, "pdf", tenant_id=get_tenant_by_slug("torfaen").id)[2]


@pytest.mark.parametrize("args,code,message", [
    (["--format", "docx"], 2, "'docx' is not one of 'csv', 'xlsx', 'pdf', 'journal'"),
    (["--format", "csv", "--tenant", "mordor"], 1, "No tenant 'mordor'"),
    (["--format", "csv", "--user", "nobody@torfaen.gov.uk"], 1, "No account with e-mail 'nobody@torfaen.gov.uk'"),
    (["--format", "xlsx"], 1, "say where to write it with --out"),
    (["--format", "pdf", "--out", "x.pdf"], 1, "A PDF statement is for one tenant"),
])
def test_cli_export_errors(cli: Any, args: list[str], code: int, message: str) -> None:
    result = cli("--month", MONTH, *args)
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output


def test_cli_export_bad_month(cli: Any) -> None:
    result = cli("--month", "2026-13", "--format", "csv")
    assert result.exit_code == 1 and "'2026-13' is not a month" in result.output


def test_the_api_serves_the_same_files(app: Any, november: dict[str, Any], make_user: Any) -> None:
    from cloud_portal.accounts.service import create_api_token
    admin = make_user("tenant_admin", "torfaen")
    token = create_api_token(None, admin, "exports")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    pdf = client.get(f"/api/v1/billing/months/{MONTH}/export?format=pdf", headers=headers)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"] == 'attachment; filename="cwmwl-2026-11-torfaen.pdf"'
    assert pdf.data == exports.render(MONTH, "pdf", tenant_id=november["torfaen"].id)[2]
    journal = client.get(f"/api/v1/billing/months/{MONTH}/export?format=journal", headers=headers)
    assert journal.status_code == 200 and b"TOR-IT-4410,15.67" in journal.data and b"MON-ICT" not in journal.data
    bad = client.get(f"/api/v1/billing/months/{MONTH}/export?format=docx", headers=headers)
    assert bad.status_code == 400 and "choose csv, xlsx, pdf or journal" in bad.get_json()["error"]

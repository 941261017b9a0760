"""Billing exports: CSV and XLSX statement lines, a tenant's PDF statement, the recharge journal.

One entry point, :func:`render`, for pages, the API and the CLI. Money stays Decimal from the
statement to the file (an XLSX cell gets the Decimal as a number). An export of a closed month
is the same bytes every time: no clock, no random ids; the XLSX and PDF dates and the PDF
identifier are derived from the month and the scope.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select

from cloud_portal.accounts.models import User
from cloud_portal.billing import charges, months
from cloud_portal.billing.labels import column_headings
from cloud_portal.billing.models import StatementLine
from cloud_portal.errors import InvalidInput, NotFound
from cloud_portal.extensions import db
from cloud_portal.i18n import _
from cloud_portal.provisioning.models import Server
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

FORMATS = ("csv", "xlsx", "pdf", "journal")
MIME_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "journal": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}
COLUMNS = ("month", "tenant", "cost_centre", "email", "name", "server_id", "server_name", "component",
           "rate_from", "quantity", "unit", "rate_gbp", "amount_gbp", "adjusts_month")
JOURNAL_COLUMNS = ("period", "cost_centre", "amount_gbp", "description")
ZERO = Decimal("0.00")
QUANTITY = Decimal("0.000001")
RATE = Decimal("0.00001")
#: Text a spreadsheet would take for a formula (CSV injection); such cells get a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportLine:
    """A statement line with the names a reader needs (tenant, person, server)."""

    month: str
    tenant_slug: str
    tenant_name: str
    cost_centre: str
    email: str
    person_name: str
    server_id: int
    server_name: str
    component: str
    rate_from: date
    quantity: Decimal
    unit: str
    rate: Decimal
    amount: Decimal
    adjusts_month: str | None


@dataclass(frozen=True)
class _Scope:
    month: str
    closed: bool
    lines: list[ExportLine]
    tenant: Tenant | None
    owner: User | None

    def file_stem(self) -> str:
        parts = ["cwmwl", self.month]
        if self.tenant is not None:
            parts.append(self.tenant.slug)
        if self.owner is not None:
            parts.append(_safe_name(self.owner.email.split("@", 1)[0]))
        return "-".join(parts)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


def render(month: str, fmt: str, *, tenant_id: int | None = None,
           owner_id: int | None = None) -> tuple[str, str, bytes]:
    """The export of ``month`` in ``fmt`` (csv, xlsx, pdf or journal) as (file name, MIME type, body).

    Scope: one person (``owner_id``), one tenant (``tenant_id``), or everyone; a PDF statement
    needs a tenant. Closed months give their final lines, open months the month to date.
    Raises InvalidInput for a bad month or format, NotFound for an unknown tenant or person.
    """
    charges.parse_month(month)
    month = month.strip()
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise InvalidInput(_("%(format)s is not an export format; choose csv, xlsx, pdf or journal.", format=repr(fmt)))
    if fmt == "pdf" and tenant_id is None:
        raise InvalidInput(_("A PDF statement is for one tenant; choose the tenant (or export csv, xlsx or journal)."))
    scope = _scope(month, tenant_id=tenant_id, owner_id=owner_id)
    if fmt == "csv":
        return f"{scope.file_stem()}.csv", MIME_TYPES[fmt], _to_csv(scope.lines)
    if fmt == "xlsx":
        return f"{scope.file_stem()}.xlsx", MIME_TYPES[fmt], _to_xlsx(month, scope.lines)
    if fmt == "journal":
        return f"{scope.file_stem()}-journal.csv", MIME_TYPES[fmt], _to_journal(month, scope.lines)
    return f"{scope.file_stem()}.pdf", MIME_TYPES[fmt], _to_pdf(scope)


def _scope(month: str, *, tenant_id: int | None, owner_id: int | None) -> _Scope:
    tenant = db.session.get(Tenant, tenant_id) if tenant_id is not None else None
    if tenant_id is not None and tenant is None:
        raise NotFound(_("There is no tenant with id %(id)s.", id=tenant_id))
    owner = db.session.get(User, owner_id) if owner_id is not None else None
    if owner_id is not None and owner is None:
        raise NotFound(_("There is no account with id %(id)s.", id=owner_id))
    closed, rows = months.statement(month, owner_id=owner_id, tenant_id=tenant_id)
    return _Scope(month, closed, _named(month, closed, rows), tenant, owner)


def _named(month: str, closed: bool, rows: list[months.StatementRow]) -> list[ExportLine]:
    """The rows with tenant, person and server names, looked up in one query each."""
    tenant_ids = {r.tenant_id for r in rows}
    owner_ids = {r.owner_id for r in rows}
    server_ids = {r.server_id for r in rows}
    tenants = {t.id: t for t in db.session.execute(
        select(Tenant.id, Tenant.slug, Tenant.name_en, Tenant.cost_centre).where(Tenant.id.in_(tenant_ids)))}
    people = {p.id: p for p in db.session.execute(
        select(User.id, User.email, User.display_name).where(User.id.in_(owner_ids)))}
    server_names = {s.id: s.name for s in db.session.execute(
        select(Server.id, Server.name).where(Server.id.in_(server_ids)))}
    # A closed month keeps the cost centre its lines were closed under, whatever tenants.yaml says now.
    cost_centres = {t.id: t.cost_centre for t in tenants.values()}
    if closed and tenant_ids:
        cost_centres.update({r.tenant_id: r.cost_centre for r in db.session.execute(
            select(StatementLine.tenant_id, StatementLine.cost_centre).distinct()
            .where(StatementLine.month == month, StatementLine.tenant_id.in_(tenant_ids))
            .order_by(StatementLine.tenant_id, StatementLine.cost_centre))})
    lines = []
    for r in rows:
        tenant, person = tenants.get(r.tenant_id), people.get(r.owner_id)
        lines.append(ExportLine(
            month=r.month, tenant_slug=tenant.slug if tenant else str(r.tenant_id),
            tenant_name=tenant.name_en if tenant else str(r.tenant_id), cost_centre=cost_centres.get(r.tenant_id, ""),
            email=person.email if person else str(r.owner_id), person_name=person.display_name if person else "",
            server_id=r.server_id, server_name=server_names.get(r.server_id, ""), component=r.component,
            rate_from=r.rate_from, quantity=r.quantity.quantize(QUANTITY), unit=r.unit, rate=r.rate.quantize(RATE),
            amount=r.amount, adjusts_month=r.adjusts_month))
    lines.sort(key=lambda x: (x.tenant_slug, x.email, x.server_id, x.component, x.rate_from, x.adjusts_month or ""))
    return lines


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "person"


def _text(value: str) -> str:
    """Free text for a CSV cell, defused so a spreadsheet never reads it as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_bytes(columns: tuple[str, ...], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(column_headings(columns))
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _to_csv(lines: list[ExportLine]) -> bytes:
    """One CSV row per statement line (UTF-8, header row, amounts with two decimals)."""
    return _csv_bytes(COLUMNS, [
        [x.month, x.tenant_slug, x.cost_centre, _text(x.email), _text(x.person_name), str(x.server_id),
         _text(x.server_name), x.component, x.rate_from.isoformat(), str(x.quantity), x.unit, str(x.rate),
         f"{x.amount:.2f}", x.adjusts_month or ""] for x in lines])


def _to_journal(month: str, lines: list[ExportLine]) -> bytes:
    """The recharge journal: one line per tenant cost centre with a non-zero total."""
    totals: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
    for x in lines:
        totals[(x.cost_centre, x.tenant_slug, x.tenant_name)] += x.amount
    return _csv_bytes(JOURNAL_COLUMNS, [
        [month, cost_centre, f"{amount:.2f}",
         _("Cwmwl Cymru private cloud charges %(month)s, %(tenant)s", month=month, tenant=name)]
        for (cost_centre, _slug, name), amount in sorted(totals.items()) if amount])


def _fixed_moment(month: str) -> datetime:
    """The instant ``month`` ends (UTC): the date written into files instead of the clock."""
    return charges.month_bounds(month, months.billing_zone())[1]


def _to_xlsx(month: str, lines: list[ExportLine]) -> bytes:
    """A workbook with one sheet (titled ``month``): header, one row per line, a total row.

    Money cells are numbers formatted with two decimals. The bytes depend only on the lines.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook()
    ws = wb.active
    ws.title = month
    bold = Font(bold=True)
    ws.append(column_headings(COLUMNS))
    for cell in ws[1]:
        cell.font = bold
    formats = {"server_id": "0", "rate_from": "yyyy-mm-dd", "quantity": "#,##0.000000", "rate_gbp": "0.00000",
               "amount_gbp": "#,##0.00"}
    text_columns = {"email", "name", "server_name"}
    for x in lines:
        ws.append([x.month, x.tenant_slug, x.cost_centre, x.email, x.person_name, x.server_id, x.server_name,
                   x.component, x.rate_from, x.quantity, x.unit, x.rate, x.amount, x.adjusts_month])
    total_row = ws.max_row + 1
    ws.cell(total_row, 1, _("Total")).font = bold
    total = ws.cell(total_row, COLUMNS.index("amount_gbp") + 1, sum((x.amount for x in lines), ZERO))
    total.font = bold
    widths = {"email": 32, "name": 24, "server_name": 20, "quantity": 16}
    for index, name in enumerate(COLUMNS, start=1):
        for (cell,) in ws.iter_rows(min_row=2, max_row=total_row, min_col=index, max_col=index):
            if name in formats and cell.value is not None:
                cell.number_format = formats[name]
            if name in text_columns and isinstance(cell.value, str):
                cell.data_type = "s"  # never a formula, whatever a name begins with
        ws.column_dimensions[get_column_letter(index)].width = widths.get(name, 12)
    ws.freeze_panes = "A2"
    moment = _fixed_moment(month).replace(tzinfo=None)  # openpyxl writes naive datetimes as UTC
    wb.properties.creator = wb.properties.lastModifiedBy = "Cwmwl Cymru portal"
    wb.properties.title = _("Cwmwl Cymru charges %(month)s", month=month)
    wb.properties.created = wb.properties.modified = moment
    raw = io.BytesIO()
    # ExcelWriter, not Workbook.save: save() stamps properties.modified with the clock.
    ExcelWriter(wb, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True)).save()
    return _fixed_zip(raw.getvalue(), moment)


#: The last moment an MS-DOS date, and so a zip entry, can hold.
LAST_ZIP_MOMENT = datetime(2107, 12, 31, 23, 59, 58)


def _fixed_zip(data: bytes, moment: datetime) -> bytes:
    """``data`` (a zip) rewritten with every entry dated ``moment`` (zipfile stamps them with the clock)."""
    out = io.BytesIO()
    # A zip entry's date is an MS-DOS date, which ends with 2107: a later month's files carry
    # that last day (the portal bills months to 9998; without this, their export crashed).
    moment = min(moment, LAST_ZIP_MOMENT)
    stamp = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            info.create_system = 3
            target.writestr(info, source.read(entry))
    return out.getvalue()


@dataclass(frozen=True)
class _Person:
    email: str
    name: str
    lines: list[ExportLine]

    @property
    def subtotal(self) -> Decimal:
        return sum((x.amount for x in self.lines), ZERO)


def statement_html(month: str, *, tenant_id: int, owner_id: int | None = None) -> str:
    """The tenant statement as HTML (the PDF's source): people, their lines and subtotals, the total."""
    return _statement_html(_scope(month, tenant_id=tenant_id, owner_id=owner_id))


def _statement_html(scope: _Scope) -> str:
    from flask import current_app, has_request_context, render_template

    assert scope.tenant is not None
    by_person: dict[str, list[ExportLine]] = defaultdict(list)
    names: dict[str, str] = {}
    for x in scope.lines:
        by_person[x.email].append(x)
        names[x.email] = x.person_name
    people = [_Person(email, names[email], by_person[email]) for email in sorted(by_person)]
    cost_centre = scope.lines[0].cost_centre if scope.lines else scope.tenant.cost_centre
    as_at = None if scope.closed else utcnow().astimezone(months.billing_zone())
    context = {"month": scope.month, "closed": scope.closed, "tenant": scope.tenant, "cost_centre": cost_centre,
               "person": scope.owner, "people": people, "total": scope.total, "as_at": as_at}
    if has_request_context():
        return render_template("billing/statement_pdf.html", **context)
    # The CLI has no request; the app's template context (language) wants one.
    with current_app.test_request_context():
        return render_template("billing/statement_pdf.html", **context)


def _to_pdf(scope: _Scope) -> bytes:
    """The tenant statement as PDF (WeasyPrint), fixed metadata and identifier: same lines, same bytes."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    assert scope.tenant is not None
    # Nothing external: the template carries its own CSS; refuse every URL rather than fetch one.
    document = HTML(string=_statement_html(scope), url_fetcher=URLFetcher(allowed_protocols=())).render()
    stamp = _fixed_moment(scope.month).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document.metadata.created = document.metadata.modified = stamp
    document.metadata.generator = "Cwmwl Cymru portal"
    identifier = hashlib.sha256(f"cwmwl:{scope.file_stem()}".encode()).hexdigest()[:32].encode()
    return bytes(document.write_pdf(pdf_identifier=identifier))

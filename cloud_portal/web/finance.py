"""Finance: a month's charges per tenant (down to people, servers and ledger intervals), a
year's chart, the partner summary, month close, exports, cost centres and the rate card."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from cloud_portal.billing import access, charges, crosscheck, months, reports, summaries
from cloud_portal.catalog.service import get_catalog
from cloud_portal.errors import InvalidInput, NotFound
from cloud_portal.paging import page_of_rows
from cloud_portal.tenants.service import list_tenants
from cloud_portal.web.common import redirect_on_error, requested_page, roles_required
from cloud_portal.web.forms import ConfirmForm

bp = Blueprint("finance", __name__, url_prefix="/finance")
FINANCE_ROLES = ("finance", "platform_admin")
PEOPLE_PAGE = 50
EXPORT_FORMATS = ("csv", "xlsx", "pdf", "journal")


def _chosen_month() -> tuple[str, int]:
    """(month, status): ?month=YYYY-MM, default the current month. A value that is not a month
    is said so in a flash and the current month shown instead, with status 400."""
    text = (request.args.get("month") or "").strip()
    if not text:
        return reports.current_month(), 200
    try:
        charges.parse_month(text)
    except InvalidInput:
        flash(_("“%(value)s” is not a month: choose one with the month picker or write it as YYYY-MM, "
                "for example 2026-11. Showing the current month instead.", value=text[:20]), "error")
        return reports.current_month(), 400
    return text, 200


def _month_context(month: str) -> dict[str, Any]:
    current = reports.current_month()
    following = charges.next_month(month)
    return {"month": month, "current_month": current, "previous_month": charges.previous_month(month),
            "next_month": following if following <= current else None, "state": reports.month_state(month),
            "zone": months.billing_zone()}


@bp.route("/")
@roles_required(*FINANCE_ROLES)
def overview():
    month, status = _chosen_month()
    totals = reports.tenant_totals(month)
    series = summaries.monthly_series(month)
    return render_template("finance/overview.html", totals=totals, chart=build_chart(series), series=series,
                           partners=summaries.partner_summary(month), confirm=ConfirmForm(),
                           tenants=list_tenants(include_platform=True), catalog=get_catalog(),
                           **_month_context(month)), status


@bp.route("/tenants/<slug>")
@roles_required(*FINANCE_ROLES)
def tenant(slug: str):
    """A tenant's people and their totals for the month."""
    month, status = _chosen_month()
    ref = reports.tenant_by_slug(slug)
    if ref is None:
        abort(404)
    everyone = reports.people_totals(month, ref.id)
    # A big tenant has thousands of people with charges: the table shows a page of them (largest
    # first); the total is everyone's.
    people = page_of_rows(everyone, requested_page(), PEOPLE_PAGE)
    return render_template("finance/tenant.html", tenant=ref, people=people,
                           total=sum((p.total for p in everyone), reports.ZERO), **_month_context(month)), status


@bp.route("/people/<int:user_id>")
@roles_required(*FINANCE_ROLES)
def person(user_id: int):
    """A person's servers and their statement lines for the month."""
    month, status = _chosen_month()
    who = reports.person(user_id)
    if who is None:
        abort(404)
    servers = reports.server_totals(month, who.id)
    return render_template("finance/person.html", person=who, servers=servers,
                           total=sum((s.total for s in servers), reports.ZERO), **_month_context(month)), status


@bp.route("/servers/<int:server_id>")
@roles_required(*FINANCE_ROLES)
def server(server_id: int):
    """A server's statement lines and the ledger intervals behind them."""
    month, status = _chosen_month()
    found = reports.server(server_id)
    if found is None:
        abort(404)
    closed, lines = reports.server_lines(month, found.id)
    return render_template("finance/server.html", server=found, lines=lines,
                           total=sum((line.amount for line in lines), reports.ZERO),
                           intervals=reports.intervals_for(found.id, month), **_month_context(month)), status


@bp.route("/months/<month>/close", methods=["POST"])
@roles_required(*FINANCE_ROLES)
@redirect_on_error("finance.overview", "month")
def close(month: str):
    """Close the month; a refusal (not ended, not reconciled, jobs running) is flashed with its reason."""
    if not ConfirmForm().validate_on_submit():
        flash(_("The form had expired; please try again."), "error")
        return redirect(url_for("finance.overview", month=month))
    access.check_can_close(current_user)
    result = months.close_month(month, current_user)  # commits
    if result.already_closed:
        flash(_("%(month)s was already closed; nothing changed.", month=month), "success")
    else:
        flash(_("%(month)s is closed: %(count)s statement lines, %(total)s in all.", month=month,
                count=result.line_count, total=f"£{result.total:,.2f}"), "success")
    return redirect(url_for("finance.overview", month=month))


@bp.route("/cross-check")
@roles_required(*FINANCE_ROLES)
def cross_check():
    """The Nova cross-check: differences between the ledger and Nova recorded for the month."""
    month, status = _chosen_month()
    return render_template("finance/cross_check.html", findings=crosscheck.recorded(month), confirm=ConfirmForm(),
                           **_month_context(month)), status


@bp.route("/cross-check/<month>", methods=["POST"])
@roles_required(*FINANCE_ROLES)
@redirect_on_error("finance.cross_check")
def run_cross_check(month: str):
    """Ask Nova now; differences over 0.1 hour a server are recorded and listed."""
    if not ConfirmForm().validate_on_submit():
        flash(_("The form had expired; please try again."), "error")
    else:
        found = crosscheck.run_for_month(month)
        flash(_("Cross-check done: %(count)s servers differ by more than 0.1 hour.", count=len(found)), "success")
    return redirect(url_for("finance.cross_check", month=month))


@bp.route("/export")
@roles_required(*FINANCE_ROLES)
def export():
    """?month=YYYY-MM&format=csv|xlsx|pdf|journal[&tenant=slug]: the export as a download."""
    from cloud_portal.billing import exports
    month = (request.args.get("month") or reports.current_month()).strip()
    valid = charges.MONTH_PATTERN.match(month) is not None
    # A PortalError (bad format, no such tenant, bad month) is flashed on the overview.
    g.error_redirect = ("finance.overview", {"month": month} if valid else {})
    slug = (request.args.get("tenant") or "").strip()
    ref = reports.tenant_by_slug(slug) if slug else None
    if slug and ref is None:
        raise NotFound(_("There is no organisation %(slug)s.", slug=slug[:40]))
    name, mimetype, body = exports.render(month, request.args.get("format", "csv"),
                                          tenant_id=ref.id if ref else None)
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# The chart ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    """One tenant's part of one month's stacked bar (SVG user units)."""

    x: float
    y: float
    width: float
    height: float
    series: int
    label: str


@dataclass(frozen=True)
class Tick:
    y: float
    value: Decimal


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    bars: list[Bar]
    ticks: list[Tick]
    months: list[tuple[float, str]]
    legend: list[tuple[int, Any]]
    highest: Decimal
    highest_month: str


def _nice_step(top: Decimal) -> Decimal:
    """A round axis step (1, 2, 2.5 or 5 × 10ⁿ) giving at most five steps up to ``top``."""
    if top <= 0:
        return Decimal(1)
    magnitude = Decimal(10) ** (top / 5).adjusted()
    for factor in (1, 2, Decimal("2.5"), 5, 10):
        if top / (magnitude * factor) <= 5:
            return magnitude * factor
    return magnitude * 10


def build_chart(series: summaries.MonthlySeries, *, width: int = 760, height: int = 320) -> Chart:
    """Stacked monthly bars, one colour per tenant (colour classes series-0 … series-7 in portal.css)."""
    left, top, bottom, right = 78, 14, 40, 10
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = series.month_totals
    highest = max(totals, default=Decimal(0))
    highest_month = series.months[totals.index(highest)] if totals and highest else ""
    step = _nice_step(highest)
    steps = max(1, int((highest / step).to_integral_value(rounding=ROUND_CEILING)))
    axis_top = step * steps
    scale = float(plot_h) / float(axis_top)
    slot = plot_w / max(1, len(series.months))
    bar_w = slot * 0.64
    bars: list[Bar] = []
    for i, month in enumerate(series.months):
        x = left + i * slot + (slot - bar_w) / 2
        base = float(top + plot_h)
        for n, row in enumerate(series.rows):
            amount = row.totals[i]
            if amount <= 0:
                continue
            h = float(amount) * scale
            base -= h
            bars.append(Bar(round(x, 1), round(base, 1), round(bar_w, 1), round(h, 1), n % 8,
                            f"{row.tenant.name_en}, {month}: £{amount:,.2f}"))
    ticks = [Tick(round(top + plot_h - float(step * k) * scale, 1), step * k) for k in range(steps + 1)]
    labels = [(round(left + i * slot + slot / 2, 1), month) for i, month in enumerate(series.months)]
    legend = [(n % 8, row.tenant) for n, row in enumerate(series.rows) if row.total]
    return Chart(width, height, left, top, plot_w, plot_h, bars, ticks, labels, legend, highest, highest_month)

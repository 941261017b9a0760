"""REST API for billing under /api/v1/billing: months, tenant totals, a person's statement, exports.

Scopes: finance and platform admins see every tenant; tenant admins their own tenant and its
people; members their own statement.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify
from flask_babel import lazy_gettext as _l

from cloud_portal.accounts.service import find_user_by_email
from cloud_portal.billing import access, months
from cloud_portal.errors import NotFound
from cloud_portal.extensions import csrf
from cloud_portal.i18n import _
from cloud_portal.paging import page_of_rows
from cloud_portal.tenants.service import get_tenant_by_slug, list_tenants
from cloud_portal.web.api_auth import token_required
from cloud_portal.web.api_models import (
    API_PAGE_SIZE,
    BillingMonthPage,
    ClosedMonth,
    ExportQuery,
    PageQuery,
    Statement,
    StatementQuery,
    TenantTotalPage,
    page_envelope,
    page_request,
)
from cloud_portal.web.api_spec import files, operation, validated_query

bp = Blueprint("api_billing", __name__, url_prefix="/api/v1/billing")
csrf.exempt(bp)  # bearer tokens only


def _money(value: Any) -> str:
    return f"{value:.2f}"


@bp.route("/months")
@token_required
@operation(200, BillingMonthPage,
           _l("The last twelve billing months, newest first, and whether each is closed (final) or open "
              "(month to date)"),
           query=PageQuery, tag="billing")
def list_months():
    page = page_of_rows(months.recent_months(), page_request(), API_PAGE_SIZE)
    return jsonify(page_envelope(page, lambda s: {
        "month": s.month, "closed": s.closed, "closed_at": s.closed_at.isoformat() if s.closed_at else None,
        "closed_by": s.closed_by}))


@bp.route("/months/<month>/tenants")
@token_required
@operation(200, TenantTotalPage,
           _l("Each tenant's total for a month in GBP, with cost centres (tenant admins: their own tenant)"),
           query=PageQuery, tag="billing")
def tenant_totals(month: str):
    user = g.api_user
    if access.sees_everything(user):
        tenants = list_tenants(include_platform=False)
    else:
        access.check_tenant_visible(user, user.tenant_id)
        tenants = [user.tenant]
    months.charges.parse_month(month)
    closed = months.is_closed(month)
    totals = months.totals_by_tenant(month, None if len(tenants) != 1 else tenants[0].id)
    page = page_of_rows(tenants, page_request(), API_PAGE_SIZE)
    return jsonify({"month": month, "closed": closed, **page_envelope(page, lambda t: {
        "tenant": t.slug, "cost_centre": t.cost_centre, "total_gbp": _money(totals.get(t.id, 0))})})


@bp.route("/months/<month>/statement")
@token_required
@operation(200, Statement,
           _l("A person's statement lines for a month (default the caller): final when closed, else month to date"),
           query=StatementQuery, errors=[404], tag="billing")
def statement(month: str):
    user = g.api_user
    email = validated_query(StatementQuery).user
    person = access.check_person_visible(user, find_user_by_email(email) if email else user)
    closed, rows = months.statement(month, owner_id=person.id)
    return jsonify({"month": month, "closed": closed, "user": person.email, "lines": [
        {"server_id": r.server_id, "component": r.component, "rate_key": r.rate_key, "rate_from": str(r.rate_from),
         "quantity": str(r.quantity), "unit": r.unit, "rate_gbp": str(r.rate), "amount_gbp": _money(r.amount),
         "adjusts_month": r.adjusts_month} for r in rows],
        "total_gbp": _money(sum(r.amount for r in rows))})


@bp.route("/months/<month>/export")
@files("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/pdf")
@token_required
@operation(200, None,
           _l("Download a month's export: csv, xlsx, pdf (one tenant's statement) or journal (tenant "
              "admins: their tenant)"),
           query=ExportQuery, errors=[404], tag="billing")
def export(month: str):
    from cloud_portal.billing import exports
    user = g.api_user
    args = validated_query(ExportQuery)
    tenant = get_tenant_by_slug(args.tenant) if args.tenant else None
    if args.tenant and tenant is None:
        raise NotFound(_("There is no tenant %(slug)r.", slug=args.tenant))
    if tenant is not None:
        access.check_tenant_visible(user, tenant.id)
    elif not access.sees_everything(user):
        access.check_tenant_visible(user, user.tenant_id)
        tenant = user.tenant
    name, mimetype, data = exports.render(month, args.format, tenant_id=tenant.id if tenant else None)
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/months/<month>/close", methods=["POST"])
@token_required
@operation(200, ClosedMonth,
           _l("Close a month (finance and platform admins): its lines become final"),
           notes=_l("Refused with the reason (400) until the month has ended, been reconciled and is idle."),
           tag="billing")
def close(month: str):
    access.check_can_close(g.api_user)
    result = months.close_month(month, g.api_user)
    return jsonify({"month": month, "already_closed": result.already_closed, "lines": result.line_count,
                    "total_gbp": _money(result.total), "adjustments": result.adjustments})

"""REST API for billing under /api/v1/billing: months, tenant totals, a person's statement, exports.

Scopes: finance and platform admins see every tenant; tenant admins their own tenant and its
people; members their own statement.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from cloud_portal.accounts.service import find_user_by_email
from cloud_portal.billing import access, months
from cloud_portal.errors import NotFound
from cloud_portal.extensions import csrf
from cloud_portal.tenants.service import get_tenant_by_slug, list_tenants
from cloud_portal.web.api_auth import token_required

bp = Blueprint("api_billing", __name__, url_prefix="/api/v1/billing")
csrf.exempt(bp)  # bearer tokens only


def _money(value: Any) -> str:
    return f"{value:.2f}"


@bp.route("/months")
@token_required
def list_months():
    """The last twelve billing months and whether each is closed.
    ---
    get:
      summary: "Billing months, newest first (closed: final; open: month to date)"
      responses:
        200: {description: "items of month, closed, closed_at, closed_by"}
    """
    return jsonify({"items": [{"month": s.month, "closed": s.closed,
                               "closed_at": s.closed_at.isoformat() if s.closed_at else None,
                               "closed_by": s.closed_by} for s in months.recent_months()]})


@bp.route("/months/<month>/tenants")
@token_required
def tenant_totals(month: str):
    """Each tenant's total for a month (tenant admins: their own tenant).
    ---
    get:
      summary: "Per-tenant totals in GBP, with cost centres"
      responses:
        200: {description: "month, closed, items of tenant, cost_centre, total_gbp"}
        400: {description: "not a month (YYYY-MM)"}
        403: {description: "members cannot see tenant totals"}
    """
    user = g.api_user
    if access.sees_everything(user):
        tenants = list_tenants(include_platform=False)
    else:
        access.check_tenant_visible(user, user.tenant_id)
        tenants = [user.tenant]
    months.charges.parse_month(month)
    closed = months.is_closed(month)
    totals = months.totals_by_tenant(month, None if len(tenants) != 1 else tenants[0].id)
    return jsonify({"month": month, "closed": closed, "items": [
        {"tenant": t.slug, "cost_centre": t.cost_centre, "total_gbp": _money(totals.get(t.id, 0))} for t in tenants]})


@bp.route("/months/<month>/statement")
@token_required
def statement(month: str):
    """A person's statement (?user=email; default the caller).
    ---
    get:
      summary: "A person's lines for a month: final when closed, else month to date"
      parameters:
        - {name: user, in: query, required: false, schema: {type: string}, description: "e-mail"}
      responses:
        200: {description: "month, closed, user, lines, total_gbp"}
        404: {description: "no such person visible to the caller"}
    """
    user = g.api_user
    email = request.args.get("user")
    person = access.check_person_visible(user, find_user_by_email(email) if email else user)
    closed, rows = months.statement(month, owner_id=person.id)
    return jsonify({"month": month, "closed": closed, "user": person.email, "lines": [
        {"server_id": r.server_id, "component": r.component, "rate_key": r.rate_key, "rate_from": str(r.rate_from),
         "quantity": str(r.quantity), "unit": r.unit, "rate_gbp": str(r.rate), "amount_gbp": _money(r.amount),
         "adjusts_month": r.adjusts_month} for r in rows],
        "total_gbp": _money(sum(r.amount for r in rows))})


@bp.route("/months/<month>/export")
@token_required
def export(month: str):
    """A month's export (?format=csv|xlsx|pdf|journal&tenant=slug).
    ---
    get:
      summary: "Download a statement export (tenant admins: their tenant; pdf needs a tenant)"
      responses:
        200: {description: "the file"}
        400: {description: "bad month or format"}
        403: {description: "not allowed to see the tenant's charges"}
    """
    from cloud_portal.billing import exports
    user = g.api_user
    slug = request.args.get("tenant")
    tenant = get_tenant_by_slug(slug) if slug else None
    if slug and tenant is None:
        raise NotFound(f"There is no tenant {slug!r}.")
    if tenant is not None:
        access.check_tenant_visible(user, tenant.id)
    elif not access.sees_everything(user):
        access.check_tenant_visible(user, user.tenant_id)
        tenant = user.tenant
    name, mimetype, data = exports.render(month, request.args.get("format", "csv"),
                                          tenant_id=tenant.id if tenant else None)
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/months/<month>/close", methods=["POST"])
@token_required
def close(month: str):
    """Close a month (finance and platform admins): its lines become final.
    ---
    post:
      summary: "Close a month; refused with the reason until it has ended, been reconciled and is idle"
      responses:
        200: {description: "month, already_closed, lines, total_gbp, adjustments"}
        400: {description: "not a month, or not closable yet (the reason)"}
        403: {description: "not finance or a platform administrator"}
    """
    access.check_can_close(g.api_user)
    result = months.close_month(month, g.api_user)
    return jsonify({"month": month, "already_closed": result.already_closed, "lines": result.line_count,
                    "total_gbp": _money(result.total), "adjustments": result.adjustments})

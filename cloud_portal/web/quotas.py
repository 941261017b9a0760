"""Quotas: platform admins' overview and limit editing, and quota-increase requests.

Changed limits are pushed to the tenant's OpenStack project by the quotas service
(``change_limits``, ``decide_increase``) within the request (5–30 s; acceptable for a rare admin
action, and the admin sees at once whether OpenStack took it).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required

from cloud_portal.errors import PortalError
from cloud_portal.paging import PageRequest, seek_page
from cloud_portal.quotas import service as quotas
from cloud_portal.quotas.models import QUOTA_RESOURCES
from cloud_portal.tenants.models import Tenant
from cloud_portal.tenants.service import get_tenant_by_slug, list_tenants
from cloud_portal.unit_of_work import commit
from cloud_portal.web.common import page_of, redirect_on_error, roles_required, shown_on_form
from cloud_portal.web.forms import DecideIncreaseForm, IncreaseForm, LimitsForm

bp = Blueprint("quotas", __name__)
PAGE_SIZE = 50
#: Open increase requests shown at once (each row is a decision form).
WAITING_SHOWN = 20
#: Columns the overview sorts by: the tenant's name, or a resource's share in use.
SORT_KEYS = ("name", *QUOTA_RESOURCES)


def _load_member_tenant(slug: str) -> Tenant:
    tenant = get_tenant_by_slug(slug)
    if tenant is None or tenant.is_platform:
        abort(404)
    return tenant


@bp.route("/admin/quotas")
@roles_required("platform_admin")
def overview():
    """Every member tenant: usage against each limit, sortable by any column."""
    sort = request.args.get("sort", "name")
    if sort not in SORT_KEYS:
        abort(404)
    descending = request.args.get("dir", "asc") == "desc"
    locale = str(get_locale() or "en")
    tenants = list_tenants(include_platform=False)
    ids = [t.id for t in tenants]
    limits, usage = quotas.limits_for_tenants(ids), quotas.usage_for_tenants(ids)
    rows = [{"tenant": t, "limits": limits[t.id].tenant, "usage": usage[t.id]} for t in tenants]

    def key(row: dict[str, Any]) -> Any:
        if sort == "name":
            return row["tenant"].display_name(locale).lower()
        limit = row["limits"].get(sort) or 0
        return row["usage"][sort] / limit if limit else float(row["usage"][sort] > 0) * 1e9

    rows.sort(key=key, reverse=descending)
    waiting = quotas.count_open_increases(current_user)
    return render_template("quotas/overview.html", rows=rows, sort=sort, descending=descending,
                           resources=QUOTA_RESOURCES, waiting=waiting)


def _limits_from_form(form: LimitsForm) -> tuple[dict[str, int], dict[str, int | None]]:
    tenant = {r: getattr(form, f"tenant_{r}").data for r in QUOTA_RESOURCES}
    per_user = {r: getattr(form, f"user_{r}").data for r in QUOTA_RESOURCES}
    return tenant, per_user


@bp.route("/admin/quotas/<slug>", methods=["GET", "POST"])
@roles_required("platform_admin")
def edit(slug: str):
    """One tenant's limits; lowering below usage asks for an explicit confirmation."""
    tenant = _load_member_tenant(slug)
    current = quotas.limits_for_tenant(tenant.id)
    form = LimitsForm()
    if request.method == "GET":
        for r in QUOTA_RESOURCES:
            getattr(form, f"tenant_{r}").data = current.tenant.get(r, 0)
            getattr(form, f"user_{r}").data = current.per_user.get(r)
    problems: list[str] = []
    status = 200
    if form.validate_on_submit():
        tenant_limits, per_user_limits = _limits_from_form(form)
        try:
            failed = quotas.change_limits(current_user, tenant, tenant_limits, per_user_limits,
                                          confirm_below_usage=bool(form.confirm_below_usage.data))
        except quotas.LimitsBelowUsage as exc:
            problems, status = exc.problems, 409
        except PortalError as exc:
            status = shown_on_form(exc)
        else:
            flash(_("The limits of %(tenant)s are saved.", tenant=tenant.name_en), "success")
            if failed:
                flash(_("OpenStack was not updated: %(reason)s", reason=failed), "error")
            return redirect(url_for("quotas.overview"))
    elif request.method == "POST":
        status = 400
    usage = quotas.usage_for_tenant(tenant.id)
    return render_template("quotas/edit.html", tenant=tenant, form=form, usage=usage, current=current,
                           problems=problems, resources=QUOTA_RESOURCES), status


@bp.route("/admin/quotas/increases")
@roles_required("platform_admin")
def increase_queue():
    """Open quota-increase requests first, then the decided ones, newest first."""
    # The queue shows the requests that have waited longest (a page of them: each row is a form);
    # deciding them brings the next ones up.
    open_ones = quotas.increases_listing(current_user, scope="open")
    waiting = seek_page(replace(open_ones, descending=False), PageRequest(), WAITING_SHOWN)
    decided = page_of(quotas.increases_listing(current_user, scope="decided"), PAGE_SIZE)
    return render_template("quotas/increase_queue.html", waiting=waiting.items, waiting_total=waiting,
                           decided=decided, resources=QUOTA_RESOURCES)


@bp.route("/admin/quotas/increases/<int:increase_id>/<any(approve, decline):decision>", methods=["POST"])
@roles_required("platform_admin")
@redirect_on_error("quotas.increase_queue")
def decide(increase_id: int, decision: str):
    form = DecideIncreaseForm()
    if not form.validate_on_submit():
        flash(_("The reason can be at most 500 characters."), "error")
        return redirect(url_for("quotas.increase_queue"))
    outcome = quotas.decide_increase(current_user, increase_id, decision, form.reason.data or "")
    if decision == "approve":
        flash(_("Approved: the limits of %(tenant)s are raised.", tenant=outcome.increase.tenant.name_en), "success")
        if outcome.cloud_sync_error:
            flash(_("OpenStack was not updated: %(reason)s", reason=outcome.cloud_sync_error), "error")
    else:
        flash(_("Declined; the requester sees your reason."), "success")
    return redirect(url_for("quotas.increase_queue"))


@bp.route("/quotas/increase/new", methods=["GET", "POST"])
@login_required
def new_increase():
    """Ask for more quota; the amounts come pre-filled from the request form's shortfall."""
    if not current_user.can_ask_quota_increase:
        abort(403)
    form = IncreaseForm()
    if request.method == "GET":
        for r in QUOTA_RESOURCES:
            value = request.args.get(r, type=int)
            if value is not None and value > 0:
                getattr(form, r).data = value
    status = 200
    if form.validate_on_submit():
        try:
            quotas.create_increase(current_user, {r: getattr(form, r).data for r in QUOTA_RESOURCES},
                                   form.reason.data or "")
            commit()
        except PortalError as exc:
            status = shown_on_form(exc)
        else:
            flash(_("Your request for more quota is sent to the platform administrators. You will "
                    "see their decision here and by e-mail."), "success")
            return redirect(url_for("quotas.my_increases"))
    elif request.method == "POST":
        status = 400
    room = quotas.headroom(current_user.tenant_id, current_user.id)
    return render_template("quotas/increase_new.html", form=form, room=room, resources=QUOTA_RESOURCES), status


@bp.route("/quotas/increases")
@login_required
def my_increases():
    """The person's own quota-increase requests with their state and the admins' reasons."""
    increases = page_of(quotas.increases_listing(current_user, scope="mine"), PAGE_SIZE)
    return render_template("quotas/increases_mine.html", increases=increases, resources=QUOTA_RESOURCES)

"""Ordering and running servers and desktops: request form, progress, my servers, approvals."""
from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    render_template_string,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select
from wtforms import SelectChoice

from cloud_portal.catalog.models import Image, VmSize
from cloud_portal.catalog.offers import Offer, offers
from cloud_portal.errors import PortalError
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import requests as orders
from cloud_portal.provisioning import servers as server_service
from cloud_portal.provisioning import timed
from cloud_portal.provisioning.leases import latest_job
from cloud_portal.provisioning.step_words import reason_shown, step_message, step_name, step_status
from cloud_portal.quotas.service import headroom
from cloud_portal.tenants.service import hall_names
from cloud_portal.unit_of_work import commit
from cloud_portal.web.common import flash_form_errors, page_of, redirect_on_error, roles_required, shown_on_form
from cloud_portal.web.forms import (
    ConfirmForm,
    ExtendForm,
    RejectForm,
    RequestForm,
    ResizeForm,
    ScheduleForm,
    TransferForm,
)
from cloud_portal.weekly import WEEKDAYS

bp = Blueprint("servers", __name__)
PAGE_SIZE = 25
ORDERING_ROLES = ("member", "tenant_admin", "platform_admin")


def _locale() -> str:
    return str(get_locale() or "en")


def _request_form(kind: str) -> RequestForm:
    form = RequestForm()
    locale = _locale()
    form.kind.data = kind
    form.catalog_key.choices = [SelectChoice(o.key, f"{o.display_name(locale)} — "
                                                    f"{o.vcpus} vCPU, {o.ram_mib // 1024} GiB, {o.disk_gb} GB — "
                                                    f"£{o.monthly:,.2f}") for o in offers(kind)]
    images = db.session.scalars(select(Image).where(Image.active.is_(True), Image.kind == m.KIND_VM)
                                .order_by(Image.name))
    form.image_key.choices = [SelectChoice(i.key, i.display_name(locale)) for i in images]
    halls = hall_names(locale)
    form.data_hall.choices = [SelectChoice(h, halls.get(h, h)) for h in current_user.tenant.allowed_halls]
    return form


@bp.route("/requests/new/<any(vm, desktop):kind>", methods=["GET", "POST"])
@roles_required(*ORDERING_ROLES)
def new_request(kind: str):
    form = _request_form(kind)
    if request.method == "GET" and request.args.get("size"):
        form.catalog_key.data = request.args["size"]
    room = headroom(current_user.tenant_id, current_user.id)
    needed = ("instances", "vcpus", "ram_mib", "disk_gb") + (("desktops",) if kind == "desktop" else ())
    # A tenant admin may be ordering for someone else, whose own limits the service checks.
    blocked = [resource for resource, h in room.items() if resource in needed
               and (h.tenant_left if current_user.is_tenant_admin else h.available) <= 0]
    status = 200
    if form.validate_on_submit():
        try:
            created = orders.submit_request(
                current_user, kind=kind, catalog_key=form.catalog_key.data or "",
                image_key=form.image_key.data if kind == m.KIND_VM else None,
                data_hall=form.data_hall.data or "", name=form.name.data or "",
                for_email=form.for_email.data if current_user.is_tenant_admin else None,
                expires_on=form.expires_on.data)
            commit()
        except PortalError as exc:
            status = shown_on_form(exc)
        else:
            if created.state == m.APPROVED:
                flash(_("Your request is accepted and is being provisioned."), "success")
            else:
                flash(_("Your request needs a tenant administrator's approval; you will see their "
                        "decision here."), "info")
            return redirect(url_for("servers.show_request", request_id=created.id))
    elif request.method == "POST":
        status = 400
    offered = {o.key: o for o in offers(kind)}
    chosen = offered.get(form.catalog_key.data or "") or next(iter(offered.values()), None)
    shortfall = _shortfall(room, chosen, kind) if chosen is not None else {}
    return render_template("servers/request_form.html", form=form, kind=kind, offers=offered, room=room,
                           blocked=blocked, shortfall=shortfall), status


def _shortfall(room: dict[str, Any], offer: Offer, kind: str) -> dict[str, int]:
    """Resource → how much more the tenant's limit must allow for ``offer`` to fit (empty: it fits)."""
    needs = {"instances": 1, "vcpus": offer.vcpus, "ram_mib": offer.ram_mib, "disk_gb": offer.disk_gb,
             "desktops": 1 if kind == m.KIND_DESKTOP else 0}
    return {r: need - room[r].tenant_left for r, need in needs.items() if need > room[r].tenant_left}


@bp.route("/requests")
@login_required
def list_requests():
    scope = request.args.get("scope", "mine")
    if scope not in ("mine", "tenant"):
        abort(404)
    requests = page_of(orders.requests_listing(current_user, scope=scope), PAGE_SIZE)
    return render_template("servers/requests.html", requests=requests, scope=scope)


@bp.route("/requests/<int:request_id>")
@login_required
def show_request(request_id: int):
    order = orders.load_request(current_user, request_id)
    return render_template("servers/request.html", order=order, job=latest_job(request_id=order.id),
                           confirm=ConfirmForm(), reject=RejectForm())


@bp.route("/requests/<int:request_id>/progress.json")
@login_required
def request_progress(request_id: int):
    order = orders.load_request(current_user, request_id)
    job = latest_job(request_id=order.id)
    server = order.server
    return jsonify({
        "state": order.state, "state_label": render_template_string(
            '{% from "macros.html" import state_label %}{{ state_label(state) }}', state=order.state),
        "reason": reason_shown(order.reason) or None,
        "server_url": url_for("servers.show_server", server_id=server.id) if server else None,
        # task, status and message as stored (what scripts match on); the labels as the page shows them.
        "steps": [{"task": s.task, "status": s.status, "at": s.at.isoformat(), "message": s.message,
                   "task_label": step_name(s.task), "status_label": step_status(s.status),
                   "message_label": step_message(s.task, s.status, s.message)}
                  for s in (job.steps if job else [])],
    })


def _request_changed(request_id: int, message: str) -> Any:
    """After a decision on a request: commit (enqueueing its job), say so, back to its page."""
    commit()
    flash(message, "success")
    return redirect(url_for("servers.show_request", request_id=request_id))


@bp.route("/requests/<int:request_id>/approve", methods=["POST"])
@roles_required("tenant_admin", "platform_admin")
@redirect_on_error("servers.show_request", "request_id")
def approve(request_id: int):
    orders.approve(current_user, request_id)
    return _request_changed(request_id, _("Approved: provisioning has started."))


@bp.route("/requests/<int:request_id>/reject", methods=["POST"])
@roles_required("tenant_admin", "platform_admin")
@redirect_on_error("servers.show_request", "request_id")
def reject(request_id: int):
    orders.reject(current_user, request_id, RejectForm().reason.data or "")
    return _request_changed(request_id, _("Rejected; the requester sees your reason."))


@bp.route("/requests/<int:request_id>/cancel", methods=["POST"])
@login_required
@redirect_on_error("servers.show_request", "request_id")
def cancel(request_id: int):
    orders.cancel(current_user, request_id)
    return _request_changed(request_id, _("The request is cancelled and its quota released."))


@bp.route("/requests/<int:request_id>/clean-up", methods=["POST"])
@login_required
@redirect_on_error("servers.list_requests")
def clean_up(request_id: int):
    orders.dismiss_failed(current_user, request_id)
    commit()
    flash(_("Cleaned up: nothing of this request is left in the cloud."), "success")
    return redirect(url_for("servers.list_requests"))


@bp.route("/approvals")
@roles_required("tenant_admin", "platform_admin")
def approvals():
    waiting = page_of(orders.requests_listing(current_user, scope="approvals"), PAGE_SIZE)
    return render_template("servers/approvals.html", requests=waiting, confirm=ConfirmForm(), reject=RejectForm())


@bp.route("/servers")
@login_required
def list_servers():
    scope = request.args.get("scope", "mine")
    sort = request.args.get("sort", "created")
    kind = request.args.get("kind") or None
    if scope not in ("mine", "tenant", "all") or sort not in server_service.SORTABLE or \
            kind not in (None, m.KIND_VM, m.KIND_DESKTOP):
        abort(404)
    descending = request.args.get("dir", "desc") != "asc"
    listing = server_service.servers_listing(current_user, scope=scope, sort=sort, descending=descending,
                                             kind=kind)
    servers = page_of(listing, PAGE_SIZE)
    return render_template("servers/servers.html", servers=servers, scope=scope, sort=sort, descending=descending,
                           kind=kind)


@bp.route("/servers/<int:server_id>")
@login_required
def show_server(server_id: int):
    server = server_service.load_server(current_user, server_id)
    resize = ResizeForm()
    sizes = db.session.scalars(select(VmSize).where(VmSize.active.is_(True)).order_by(VmSize.vcpus, VmSize.ram_mib))
    resize.size.choices = [SelectChoice(s.key, f"{s.display_name(_locale())} ({s.vcpus} vCPU, {s.ram_mib // 1024} GiB)")
                           for s in sizes if s.flavor != server.flavor]
    from cloud_portal.billing.reports import schedule_savings, server_cost_so_far
    row = timed.schedule_for(server.id)
    weekday_labels = _weekday_labels()
    schedule = ScheduleForm()
    schedule.days.choices = [SelectChoice(day, label) for day, label in weekday_labels.items()]
    if row is not None:
        schedule.days.data, schedule.stop.data, schedule.start.data = row.days, row.stop_at, row.start_at
        schedule.timezone.data = row.timezone
    else:
        schedule.days.data = list(WEEKDAYS[:5])
    return render_template("servers/server.html", server=server, confirm=ConfirmForm(), resize=resize,
                           transfer=TransferForm(), job=latest_job(server_id=server.id),
                           cost=server_cost_so_far(server.id), schedule_row=row, schedule=schedule,
                           weekday_labels=weekday_labels, extend=ExtendForm(),
                           saved=schedule_savings(server.id) if row is not None else None,
                           next_local=timed.local_time(row.next_at, row.timezone) if row and row.next_at else "",
                           lease_zone=timed.LEASE_ZONE)


def _weekday_labels() -> dict[str, str]:
    return {"mon": _("Monday"), "tue": _("Tuesday"), "wed": _("Wednesday"), "thu": _("Thursday"),
            "fri": _("Friday"), "sat": _("Saturday"), "sun": _("Sunday")}


@bp.route("/servers/<int:server_id>/schedule", methods=["POST"])
@login_required
@redirect_on_error("servers.show_server", "server_id")
def set_schedule(server_id: int):
    form = ScheduleForm()
    if not form.validate_on_submit():
        flash_form_errors(form)  # what was wrong, on the server page (the service checks the rest)
        return redirect(url_for("servers.show_server", server_id=server_id))
    timed.set_schedule(current_user, server_id, days=form.days.data, stop=form.stop.data, start=form.start.data,
                       timezone=form.timezone.data)
    commit()
    flash(_("Office hours saved."), "success")
    return redirect(url_for("servers.show_server", server_id=server_id))


@bp.route("/servers/<int:server_id>/schedule/clear", methods=["POST"])
@login_required
@redirect_on_error("servers.show_server", "server_id")
def clear_schedule(server_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    timed.clear_schedule(current_user, server_id)
    commit()
    flash(_("Office hours removed: the server runs until someone stops it."), "success")
    return redirect(url_for("servers.show_server", server_id=server_id))


@bp.route("/servers/<int:server_id>/extend", methods=["POST"])
@login_required
@redirect_on_error("servers.show_server", "server_id")
def extend(server_id: int):
    form = ExtendForm()
    if not form.validate_on_submit() or form.until.data is None:
        flash(_("Choose the last day it is needed."), "error")
        return redirect(url_for("servers.show_server", server_id=server_id))
    server = timed.extend_lease(current_user, server_id, form.until.data)
    commit()
    flash(_("%(name)s is kept until %(day)s.", name=server.name, day=form.until.data.strftime("%d/%m/%Y")), "success")
    return redirect(url_for("servers.show_server", server_id=server_id))


@bp.route("/servers/<int:server_id>/transfer", methods=["POST"])
@login_required
@redirect_on_error("servers.show_server", "server_id")
def transfer(server_id: int):
    form = TransferForm()
    target = url_for("servers.show_server", server_id=server_id)
    leaver = request.form.get("leaver", type=int)
    if leaver:  # given from a leaver's page: back there, errors included
        g.error_redirect = ("admin.leaver_servers", {"user_id": leaver})
        target = url_for("admin.leaver_servers", user_id=leaver)
    if not form.validate_on_submit():
        flash_form_errors(form)
        return redirect(target)
    server = server_service.transfer_server(current_user, server_id, form.to_email.data or "")
    commit()  # queues the job that writes the new owner into Nova's metadata
    flash(_("%(name)s now belongs to %(email)s.", name=server.name, email=server.owner.email), "success")
    return redirect(target)


@bp.route("/servers/<int:server_id>/<any(start, stop, reboot, resize, delete):action>", methods=["POST"])
@login_required
@redirect_on_error("servers.show_server", "server_id")
def server_action(server_id: int, action: str):
    form = ResizeForm() if action == "resize" else ConfirmForm()
    if action == "resize":
        form.size.choices = [SelectChoice(s.key) for s in db.session.scalars(select(VmSize))]
    if not form.validate_on_submit():
        flash(_("Choose a size."), "error")
        return redirect(url_for("servers.show_server", server_id=server_id))
    server, _job = server_service.request_action(current_user, server_id, action,
                                                 new_size=form.size.data if action == "resize" else None)
    commit()
    labels = {"start": _("Start"), "stop": _("Stop"), "reboot": _("Reboot"), "resize": _("Resize"),
              "delete": _("Delete")}
    flash(_("%(action)s requested for %(name)s.", action=labels[action], name=server.name), "success")
    leaver = request.form.get("leaver", type=int)
    if leaver:  # deleted from a leaver's page: back to the rest of their servers
        return redirect(url_for("admin.leaver_servers", user_id=leaver))
    return redirect(url_for("servers.show_server", server_id=server_id))


@bp.route("/servers/<int:server_id>/console", methods=["POST"])
@login_required
@redirect_on_error("servers.show_server", "server_id")
def console(server_id: int):
    # POST (with the CSRF token): each visit makes a console token and an audit entry.
    url = server_service.console_url(current_user, server_id)
    if not url:
        flash(_("The cloud offers no console for this server right now."), "error")
        return redirect(url_for("servers.show_server", server_id=server_id))
    commit()
    return redirect(url)

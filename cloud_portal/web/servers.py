"""Ordering and running servers and desktops: request form, progress, my servers, approvals."""
from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
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

from cloud_portal.catalog.models import Image, VmSize
from cloud_portal.errors import PortalError
from cloud_portal.extensions import db
from cloud_portal.jobs.provisioning import enqueue_job, provision_request
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import service
from cloud_portal.quotas.service import headroom
from cloud_portal.tenants.service import hall_names
from cloud_portal.web import flash_error, roles_required
from cloud_portal.web.forms import ConfirmForm, RejectForm, RequestForm, ResizeForm

bp = Blueprint("servers", __name__)
PAGE_SIZE = 25
ORDERING_ROLES = ("member", "tenant_admin", "platform_admin")


def cloud_or_none() -> service.OpenStackCloud | None:
    """The cloud for pre-flight checks, when one is configured (not in unit tests)."""
    ctx = service.CloudContext.configured(current_app.config, current_app.instance_path)
    return ctx.cloud if ctx is not None else None


def _locale() -> str:
    return str(get_locale() or "en")


def _request_form(kind: str) -> RequestForm:
    form = RequestForm()
    locale = _locale()
    form.kind.data = kind
    form.catalog_key.choices = [(o.key, f"{o.name_cy if locale == 'cy' else o.name_en} — "
                                        f"{o.vcpus} vCPU, {o.ram_mib // 1024} GiB, {o.disk_gb} GB — "
                                        f"£{o.monthly:,.2f}") for o in service.offers(kind)]
    images = db.session.scalars(select(Image).where(Image.active.is_(True), Image.kind == m.KIND_VM)
                                .order_by(Image.name))
    form.image_key.choices = [(i.key, i.name) for i in images]
    halls = hall_names(locale)
    form.data_hall.choices = [(h, halls.get(h, h)) for h in current_user.tenant.allowed_halls]
    return form


@bp.route("/requests/new/<any(vm, desktop):kind>", methods=["GET", "POST"])
@roles_required(*ORDERING_ROLES)
def new_request(kind: str):
    form = _request_form(kind)
    if request.method == "GET" and request.args.get("size"):
        form.catalog_key.data = request.args["size"]
    room = headroom(current_user.tenant_id, current_user.id)
    needed = ("instances", "vcpus", "ram_mib", "disk_gb") + (("desktops",) if kind == "desktop" else ())
    blocked = [resource for resource, h in room.items() if h.available <= 0 and resource in needed]
    status = 200
    if form.validate_on_submit():
        try:
            created = service.submit_request(
                current_user, kind=kind, catalog_key=form.catalog_key.data or "",
                image_key=form.image_key.data if kind == m.KIND_VM else None,
                data_hall=form.data_hall.data or "", name=form.name.data or "", cloud=cloud_or_none())
        except PortalError as exc:
            db.session.rollback()
            flash_error(exc)
            status = 400
        else:
            if created.state == m.APPROVED:
                service.new_provision_job(created)
                db.session.commit()
                provision_request(created.id)
                flash(_("Your request is accepted and is being provisioned."), "success")
            else:
                flash(_("Your request needs a tenant administrator's approval; you will see their "
                        "decision here."), "info")
            return redirect(url_for("servers.show_request", request_id=created.id))
    elif request.method == "POST":
        status = 400
    offers = {o.key: o for o in service.offers(kind)}
    chosen = offers.get(form.catalog_key.data or "") or next(iter(offers.values()), None)
    shortfall = _shortfall(room, chosen, kind) if chosen is not None else {}
    return render_template("servers/request_form.html", form=form, kind=kind, offers=offers, room=room,
                           blocked=blocked, shortfall=shortfall), status


def _shortfall(room: dict[str, Any], offer: service.Offer, kind: str) -> dict[str, int]:
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
    page = max(1, request.args.get("page", 1, type=int))
    requests = db.paginate(service.requests_query(current_user, scope=scope), page=page, per_page=PAGE_SIZE,
                           error_out=False)
    return render_template("servers/requests.html", requests=requests, scope=scope)


@bp.route("/requests/<int:request_id>")
@login_required
def show_request(request_id: int):
    order = service.load_request(current_user, request_id)
    job = db.session.scalar(select(m.Job).where(m.Job.request_id == order.id).order_by(m.Job.created_at.desc()))
    return render_template("servers/request.html", order=order, job=job, confirm=ConfirmForm(),
                           reject=RejectForm())


@bp.route("/requests/<int:request_id>/progress.json")
@login_required
def request_progress(request_id: int):
    order = service.load_request(current_user, request_id)
    job = db.session.scalar(select(m.Job).where(m.Job.request_id == order.id).order_by(m.Job.created_at.desc()))
    server = order.server
    return jsonify({
        "state": order.state, "state_label": render_template_string(
            '{% from "macros.html" import state_label %}{{ state_label(state) }}', state=order.state),
        "reason": order.reason,
        "server_url": url_for("servers.show_server", server_id=server.id) if server else None,
        "steps": [{"task": s.task, "status": s.status, "at": s.at.isoformat(), "message": s.message}
                  for s in (job.steps if job else [])],
    })


def _decide(request_id: int, decision: str) -> Any:
    try:
        if decision == "approve":
            order = service.approve(current_user, request_id)
            job = service.new_provision_job(order)
            db.session.commit()
            enqueue_job(job)
            flash(_("Approved: provisioning has started."), "success")
        else:
            form = RejectForm()
            order = service.reject(current_user, request_id, form.reason.data or "")
            db.session.commit()
            flash(_("Rejected; the requester sees your reason."), "success")
    except PortalError as exc:
        db.session.rollback()
        flash_error(exc)
    return redirect(url_for("servers.show_request", request_id=request_id))


@bp.route("/requests/<int:request_id>/approve", methods=["POST"])
@roles_required("tenant_admin", "platform_admin")
def approve(request_id: int):
    return _decide(request_id, "approve")


@bp.route("/requests/<int:request_id>/reject", methods=["POST"])
@roles_required("tenant_admin", "platform_admin")
def reject(request_id: int):
    return _decide(request_id, "reject")


@bp.route("/requests/<int:request_id>/cancel", methods=["POST"])
@login_required
def cancel(request_id: int):
    try:
        service.cancel(current_user, request_id)
        db.session.commit()
        flash(_("The request is cancelled and its quota released."), "success")
    except PortalError as exc:
        db.session.rollback()
        flash_error(exc)
    return redirect(url_for("servers.show_request", request_id=request_id))


@bp.route("/requests/<int:request_id>/clean-up", methods=["POST"])
@login_required
def clean_up(request_id: int):
    ctx = service.CloudContext.configured(current_app.config, current_app.instance_path)
    try:
        service.dismiss_failed(current_user, request_id, ctx)
        db.session.commit()
        flash(_("Cleaned up: nothing of this request is left in the cloud."), "success")
    except PortalError as exc:
        db.session.rollback()
        flash_error(exc)
    return redirect(url_for("servers.list_requests"))


@bp.route("/approvals")
@roles_required("tenant_admin", "platform_admin")
def approvals():
    page = max(1, request.args.get("page", 1, type=int))
    waiting = db.paginate(service.requests_query(current_user, scope="approvals"), page=page,
                          per_page=PAGE_SIZE, error_out=False)
    return render_template("servers/approvals.html", requests=waiting, confirm=ConfirmForm(), reject=RejectForm())


@bp.route("/servers")
@login_required
def list_servers():
    scope = request.args.get("scope", "mine")
    sort = request.args.get("sort", "created")
    if scope not in ("mine", "tenant", "all") or sort not in service.SORTABLE:
        abort(404)
    descending = request.args.get("dir", "desc") != "asc"
    page = max(1, request.args.get("page", 1, type=int))
    servers = db.paginate(service.servers_query(current_user, scope=scope, sort=sort, descending=descending),
                          page=page, per_page=PAGE_SIZE, error_out=False)
    return render_template("servers/servers.html", servers=servers, scope=scope, sort=sort, descending=descending)


@bp.route("/servers/<int:server_id>")
@login_required
def show_server(server_id: int):
    server = service.load_server(current_user, server_id)
    resize = ResizeForm()
    sizes = db.session.scalars(select(VmSize).where(VmSize.active.is_(True)).order_by(VmSize.vcpus, VmSize.ram_mib))
    resize.size.choices = [(s.key, f"{s.display_name(_locale())} ({s.vcpus} vCPU, {s.ram_mib // 1024} GiB)")
                           for s in sizes if s.flavor != server.flavor]
    job = db.session.scalar(select(m.Job).where(m.Job.server_id == server.id).order_by(m.Job.created_at.desc()))
    return render_template("servers/server.html", server=server, confirm=ConfirmForm(), resize=resize, job=job)


@bp.route("/servers/<int:server_id>/<any(start, stop, reboot, resize, delete):action>", methods=["POST"])
@login_required
def server_action(server_id: int, action: str):
    form = ResizeForm() if action == "resize" else ConfirmForm()
    if action == "resize":
        form.size.choices = [(s.key, s.key) for s in db.session.scalars(select(VmSize))]
    if not form.validate_on_submit():
        flash(_("Choose a size."), "error")
        return redirect(url_for("servers.show_server", server_id=server_id))
    try:
        server, job = service.request_action(current_user, server_id, action,
                                             new_size=form.size.data if action == "resize" else None)
        db.session.commit()
    except PortalError as exc:
        db.session.rollback()
        flash_error(exc)
    else:
        enqueue_job(job)
        labels = {"start": _("Start"), "stop": _("Stop"), "reboot": _("Reboot"), "resize": _("Resize"),
                  "delete": _("Delete")}
        flash(_("%(action)s requested for %(name)s.", action=labels[action], name=server.name), "success")
    return redirect(url_for("servers.show_server", server_id=server_id))


@bp.route("/servers/<int:server_id>/console")
@login_required
def console(server_id: int):
    server = service.load_server(current_user, server_id)
    if not server.can_operate(current_user) or server.status != m.SERVER_ACTIVE:
        flash(_("The console is available only for running servers you may operate."), "error")
        return redirect(url_for("servers.show_server", server_id=server_id))
    cloud = cloud_or_none()
    url = None
    if cloud is not None and server.openstack_id:
        try:
            url = cloud.console_url(server.openstack_id)
        except service.CloudError:
            url = None
    if not url:
        flash(_("The cloud offers no console for this server right now."), "error")
        return redirect(url_for("servers.show_server", server_id=server_id))
    return redirect(url)

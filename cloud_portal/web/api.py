"""REST API under /api/v1: personal bearer tokens, JSON in and out, OpenAPI at /api/v1/openapi.json.

Each view validates its body with a pydantic model, calls one service, commits, and answers.
Errors are ``{"error": "<sentence a person can act on>", "code": "<kind>"}``.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, url_for
from sqlalchemy import select

from cloud_portal.catalog.offers import offers as catalog_offers
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted
from cloud_portal.extensions import csrf, db
from cloud_portal.provisioning import requests as orders
from cloud_portal.provisioning import servers as server_service
from cloud_portal.provisioning import timed
from cloud_portal.quotas import service as quota_service
from cloud_portal.quotas.models import QUOTA_RESOURCES
from cloud_portal.quotas.service import headroom
from cloud_portal.tenants.service import get_tenant_by_slug
from cloud_portal.unit_of_work import commit
from cloud_portal.web.api_auth import body, error, token_required
from cloud_portal.web.api_models import (
    Decision,
    ExtendBody,
    NewQuotaIncrease,
    NewRequest,
    ScheduleBody,
    ServerActionBody,
    TransferBody,
    increase_json,
    page_json,
    request_json,
    schedule_json,
    server_json,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # bearer tokens, never cookies: no cross-site request can carry one
@bp.route("/me")
@token_required
def me():
    """Who the token belongs to.
    ---
    get:
      summary: The token's user
      responses:
        200: {description: "email, role and tenant"}
        401: {description: "missing or invalid token"}
    """
    user = g.api_user
    return jsonify({"email": user.email, "role": user.role, "tenant": user.tenant.slug})


@bp.route("/catalog")
@token_required
def catalog():
    """What can be ordered, with monthly prices in GBP.
    ---
    get:
      summary: VM sizes, desktop templates and the caller's data halls
      responses:
        200: {description: "catalog"}
    """
    def offers(kind: str) -> list[dict[str, Any]]:
        return [{"key": o.key, "name": o.name_en, "flavor": o.flavor, "vcpus": o.vcpus, "ram_mib": o.ram_mib,
                 "disk_gb": o.disk_gb, "monthly_gbp": str(o.monthly), "image": o.image_key}
                for o in catalog_offers(kind)]
    from cloud_portal.catalog.models import Image
    images = db.session.scalars(select(Image).where(Image.active.is_(True)))
    return jsonify({"vm_sizes": offers("vm"), "desktops": offers("desktop"),
                    "images": [{"key": i.key, "name": i.name, "kind": i.kind, "min_disk_gb": i.min_disk_gb}
                               for i in images],
                    "data_halls": g.api_user.tenant.allowed_halls})


@bp.route("/quotas")
@token_required
def quotas():
    """The caller's headroom: tenant and per-person limits, usage and what is left.
    ---
    get:
      summary: Quota headroom of the caller
      responses:
        200: {description: "resource → limits, usage, available"}
    """
    user = g.api_user
    room = headroom(user.tenant_id, user.id)
    return jsonify({r: {"tenant_limit": h.tenant_limit, "tenant_used": h.tenant_used, "user_limit": h.user_limit,
                        "user_used": h.user_used, "available": h.available} for r, h in room.items()})


@bp.route("/quotas/usage")
@token_required
def quota_usage():
    """A tenant's usage against its limits (tenant admins: their own; platform admins: ?tenant=slug).
    ---
    get:
      summary: "Tenant usage and limits per resource (RAM in MiB, disk in GB)"
      parameters:
        - {name: tenant, in: query, required: false, schema: {type: string}, description: "tenant slug"}
      responses:
        200: {description: "tenant, and resource → tenant limit, per-person limit, used"}
        403: {description: "not an administrator of the tenant"}
        404: {description: "no such tenant"}
    """
    user = g.api_user
    slug = request.args.get("tenant")
    tenant = user.tenant if not slug else get_tenant_by_slug(slug)
    if tenant is None or tenant.is_platform:
        raise NotFound("There is no such member tenant; pass ?tenant=<slug>.")
    if not (user.can_edit_quotas or (user.is_tenant_admin and user.can_manage_tenant(tenant))):
        raise NotPermitted("Only administrators of the tenant and platform administrators can see its usage.")
    limits = quota_service.limits_for_tenant(tenant.id)
    used = quota_service.usage_for_tenant(tenant.id)
    return jsonify({"tenant": tenant.slug, "resources": {
        r: {"tenant_limit": limits.tenant.get(r, 0), "per_user_limit": limits.per_user.get(r), "used": used[r]}
        for r in QUOTA_RESOURCES}})


@bp.route("/quota-increases")
@token_required
def list_quota_increases():
    """Quota-increase requests: the caller's own, or (platform admins) ?scope=open or all.
    ---
    get:
      summary: "List quota-increase requests, newest first (after/before: a cursor, last=1; scope: mine, open, all)"
      responses:
        200: {description: "a page of quota-increase requests"}
        403: {description: "open and all are for platform administrators"}
    """
    scope = request.args.get("scope", "mine")
    if scope not in ("mine", "open", "all"):
        raise InvalidInput("scope must be mine, open or all")
    return page_json(quota_service.increases_listing(g.api_user, scope=scope), increase_json)


@bp.route("/quota-increases", methods=["POST"])
@token_required
def create_quota_increase():
    """Ask the platform administrators for more of the tenant's quota.
    ---
    post:
      summary: "Ask for more quota (extra amounts on top of the tenant's limits, and a reason)"
      requestBody:
        content:
          application/json:
            schema: NewQuotaIncrease
      responses:
        201: {description: "the request, state open"}
        400: {description: "invalid input, with the reason"}
    """
    data = body(NewQuotaIncrease)
    increase = quota_service.create_increase(g.api_user, data.model_dump(exclude={"reason"}), data.reason)
    commit()
    response = jsonify(increase_json(increase))
    response.status_code = 201
    return response


@bp.route("/quota-increases/<int:increase_id>/<any(approve, decline):decision>", methods=["POST"])
@token_required
def decide_quota_increase(increase_id: int, decision: str):
    """Approve (limits raised, OpenStack synced) or decline with a reason (platform admins).
    ---
    post:
      summary: "Decide on a quota-increase request; decline needs a JSON body with a reason"
      requestBody:
        content:
          application/json:
            schema: Decision
      responses:
        200: {description: "the request after the decision; cloud_sync_error says if OpenStack was not updated"}
        400: {description: "already decided, or no reason"}
        403: {description: "not a platform administrator"}
    """
    reason = body(Decision).reason if request.get_data() else ""
    outcome = quota_service.decide_increase(g.api_user, increase_id, decision, reason)
    return jsonify({**increase_json(outcome.increase), "cloud_sync_error": outcome.cloud_sync_error})


@bp.route("/requests", methods=["POST"])
@token_required
def create_request():
    """Order a VM or a desktop.
    ---
    post:
      summary: Submit a request (checked and quota-reserved before anything is queued)
      requestBody:
        content:
          application/json:
            schema: NewRequest
      responses:
        201: {description: "accepted: pending_approval or approved (provisioning queued)"}
        400: {description: "invalid input, with the reason"}
        403: {description: "ordering for someone else without being their tenant admin"}
        409: {description: "over quota, naming what is short"}
    """
    data = body(NewRequest)
    created = orders.submit_request(g.api_user, kind=data.kind, catalog_key=data.size, image_key=data.image,
                                    data_hall=data.data_hall, name=data.name, for_email=data.for_,
                                    expires_on=data.expires_on)
    commit()
    response = jsonify(request_json(created))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_request", request_id=created.id)
    return response


@bp.route("/requests")
@token_required
def list_requests():
    """The caller's requests (or the tenant's with ?scope=tenant, admins only).
    ---
    get:
      summary: "List requests, newest first (after/before: a page cursor, last=1; scope: mine, tenant or approvals)"
      responses:
        200: {description: "a page of requests"}
    """
    scope = request.args.get("scope", "mine")
    if scope not in ("mine", "tenant", "approvals"):
        raise InvalidInput("scope must be mine, tenant or approvals")
    return page_json(orders.requests_listing(g.api_user, scope=scope), request_json)


@bp.route("/requests/<int:request_id>")
@token_required
def get_request(request_id: int):
    """One request with its progress steps.
    ---
    get:
      summary: A request and the steps of its provisioning job
      responses:
        200: {description: "the request"}
        404: {description: "no such request visible to the caller"}
    """
    return jsonify(request_json(orders.load_request(g.api_user, request_id), steps=True))


@bp.route("/requests/<int:request_id>/<any(approve, reject, cancel):decision>", methods=["POST"])
@token_required
def decide(request_id: int, decision: str):
    """Approve or reject (tenant admins), or cancel (the requester).
    ---
    post:
      summary: "Decide on a request; reject needs a JSON body with a reason"
      responses:
        200: {description: "the request after the decision"}
        400: {description: "not in a state that allows it"}
    """
    user = g.api_user
    if decision == "approve":
        order = orders.approve(user, request_id)
    elif decision == "reject":
        order = orders.reject(user, request_id, body(Decision).reason)
    else:
        order = orders.cancel(user, request_id)
    commit()
    return jsonify(request_json(order))


@bp.route("/servers")
@token_required
def list_servers():
    """Servers the caller owns (?scope=tenant for admins).
    ---
    get:
      summary: "List servers (after/before: a cursor, last=1; scope: mine, tenant, all;
        sort: name, created, status, size; dir: desc, asc)"
      responses:
        200: {description: "a page of servers"}
    """
    scope = request.args.get("scope", "mine")
    sort = request.args.get("sort", "created")
    direction = request.args.get("dir", "desc")
    if not (scope in ("mine", "tenant", "all") and sort in server_service.SORTABLE and direction in ("asc", "desc")):
        raise InvalidInput("scope must be mine, tenant or all; sort one of " + ", ".join(server_service.SORTABLE)
                           + "; dir asc or desc")
    listing = server_service.servers_listing(g.api_user, scope=scope, sort=sort, descending=direction == "desc")
    return page_json(listing, server_json)


@bp.route("/servers/<int:server_id>")
@token_required
def get_server(server_id: int):
    """One server.
    ---
    get:
      summary: A server as the portal knows it
      responses:
        200: {description: "the server"}
        404: {description: "no such server visible to the caller"}
    """
    server = server_service.load_server(g.api_user, server_id)
    return jsonify({**server_json(server), "schedule": schedule_json(timed.schedule_for(server.id))})


@bp.route("/servers/<int:server_id>/actions", methods=["POST"])
@token_required
def server_action(server_id: int):
    """Start, stop, reboot, resize or delete a server.
    ---
    post:
      summary: "Queue an action, e.g. action resize with size large"
      requestBody:
        content:
          application/json:
            schema: ServerActionBody
      responses:
        202: {description: "queued; poll the server for its status"}
        400: {description: "not possible in the server's state"}
    """
    data = body(ServerActionBody)
    server, job = server_service.request_action(g.api_user, server_id, data.action, new_size=data.size)
    commit()
    response = jsonify({"job": job.id, "server": server_json(server)})
    response.status_code = 202
    return response


@bp.route("/servers/<int:server_id>/schedule", methods=["PUT"])
@token_required
def put_schedule(server_id: int):
    """Set a server's office hours.
    ---
    put:
      summary: "Office hours: stop and/or start at local times (HH:MM) on the given days, in a time zone"
      requestBody:
        content:
          application/json:
            schema: ScheduleBody
      responses:
        200: {description: "the schedule, with the next change due"}
        400: {description: "a time, day or zone that cannot be kept, with the reason"}
    """
    data = body(ScheduleBody)
    row = timed.set_schedule(g.api_user, server_id, days=data.days, stop=data.stop, start=data.start,
                             timezone=data.timezone)
    commit()
    return jsonify(schedule_json(row))


@bp.route("/servers/<int:server_id>/schedule", methods=["DELETE"])
@token_required
def delete_schedule(server_id: int):
    """Remove a server's office hours.
    ---
    delete:
      summary: "Remove the office hours (the server runs until someone stops it)"
      responses:
        204: {description: "removed (or there were none)"}
    """
    timed.clear_schedule(g.api_user, server_id)
    commit()
    return "", 204


@bp.route("/servers/<int:server_id>/extend", methods=["POST"])
@token_required
def extend_server(server_id: int):
    """Keep a server longer.
    ---
    post:
      summary: "Move the expiry to the end of a later day (within the organisation's longest lease)"
      requestBody:
        content:
          application/json:
            schema: ExtendBody
      responses:
        200: {description: "the server with its new expiry"}
        400: {description: "a day in the past or beyond the longest lease"}
    """
    data = body(ExtendBody)
    server = timed.extend_lease(g.api_user, server_id, data.until)
    commit()
    return jsonify(server_json(server))


@bp.route("/servers/<int:server_id>/transfer", methods=["POST"])
@token_required
def server_transfer(server_id: int):
    """Give a server to another person of its organisation (tenant and platform admins).
    ---
    post:
      summary: "Give a server to someone else: {to: e-mail address}; the quota hold and the charges move"
      requestBody:
        content:
          application/json:
            schema: TransferBody
      responses:
        200: {description: "the server with its new owner"}
        400: {description: "no such person, or the server is busy or deleted"}
        403: {description: "not an administrator of the server's organisation"}
        409: {description: "the new owner's own limits have no room for it"}
    """
    data = body(TransferBody)
    server = server_service.transfer_server(g.api_user, server_id, data.to)
    commit()  # queues the job that writes the new owner into Nova's metadata
    return jsonify(server_json(server))


@bp.route("/servers/<int:server_id>/console", methods=["POST"])
@token_required
def server_console(server_id: int):
    """A fresh browser console address for a running server.
    ---
    post:
      summary: "Ask Nova for a console address (noVNC, one-off token); audit-logged"
      responses:
        200: {description: "the address to open in a browser: {url}"}
        400: {description: "the server is not running"}
        403: {description: "only the owner, their tenant admins and platform admins"}
        404: {description: "no such server for the caller"}
        409: {description: "the cloud offers no console right now"}
    """
    url = server_service.console_url(g.api_user, server_id)
    if not url:
        db.session.rollback()
        return error("The cloud offers no console for this server right now; try again in a minute.",
                     409, "no_console")
    commit()
    return jsonify({"url": url})


@bp.route("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API, generated from the views above."""
    from apispec import APISpec
    from apispec_webframeworks.flask import FlaskPlugin
    spec = APISpec(title="Cwmwl Cymru portal API", version="1", openapi_version="3.0.3", plugins=[FlaskPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for model in (NewRequest, Decision, NewQuotaIncrease, ServerActionBody, TransferBody, ScheduleBody,
                  ExtendBody):
        spec.components.schema(model.__name__, model.model_json_schema())
    for name, view in current_app.view_functions.items():
        if name.startswith(("api.", "api_billing.")) and name != "api.openapi":
            spec.path(view=view, app=current_app)
    document = spec.to_dict()
    document["security"] = [{"bearer": []}]
    return jsonify(document)

"""REST API under /api/v1: personal bearer tokens, JSON in and out, OpenAPI at /api/v1/openapi.json.

Each view declares its parameters, body and answers with api_spec.operation() (checked there
against the models of api_models), calls one service, commits, and answers. Errors are
``{"error": "<sentence a person can act on>", "code": "<ErrorCode>"}``.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, render_template, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from cloud_portal.catalog.offers import offers as catalog_offers
from cloud_portal.errors import NotFound, NotPermitted
from cloud_portal.extensions import csrf, db
from cloud_portal.i18n import _
from cloud_portal.provisioning import requests as orders
from cloud_portal.provisioning import servers as server_service
from cloud_portal.provisioning import timed
from cloud_portal.quotas import service as quota_service
from cloud_portal.quotas.models import QUOTA_RESOURCES
from cloud_portal.quotas.service import headroom
from cloud_portal.tenants.service import get_tenant_by_slug
from cloud_portal.unit_of_work import commit
from cloud_portal.web.api_auth import error, token_required
from cloud_portal.web.api_docs import docs_context
from cloud_portal.web.api_models import (
    Catalog,
    ConsoleAddress,
    DecidedQuotaIncrease,
    Decision,
    ExtendBody,
    Headroom,
    IncreasesQuery,
    Me,
    NewQuotaIncrease,
    NewRequest,
    QueuedAction,
    QuotaIncrease,
    QuotaIncreasePage,
    RequestsQuery,
    Schedule,
    ScheduleBody,
    ServerActionBody,
    ServerDetail,
    ServerOut,
    ServerPage,
    ServerRequestDetail,
    ServerRequestOut,
    ServerRequestPage,
    ServersQuery,
    TenantQuery,
    TenantUsage,
    TransferBody,
    increase_json,
    page_json,
    request_json,
    schedule_json,
    server_json,
)
from cloud_portal.web.api_spec import ErrorCode, openapi_document, operation, validated_body, validated_query

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # bearer tokens, never cookies: no cross-site request can carry one


@bp.route("/me")
@token_required
@operation(200, Me,
           _l("Who the token belongs to"))
def me():
    user = g.api_user
    return jsonify({"email": user.email, "role": user.role, "tenant": user.tenant.slug})


@bp.route("/catalog")
@token_required
@operation(200, Catalog,
           _l("What can be ordered: VM sizes, desktop templates (monthly prices in GBP), images and the "
              "caller's data halls"))
def catalog():
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
@operation(200, Headroom,
           _l("The caller's headroom: tenant and per-person limits, usage and what is left"))
def quotas():
    user = g.api_user
    room = headroom(user.tenant_id, user.id)
    return jsonify({r: {"tenant_limit": h.tenant_limit, "tenant_used": h.tenant_used, "user_limit": h.user_limit,
                        "user_used": h.user_used, "available": h.available} for r, h in room.items()})


@bp.route("/quotas/usage")
@token_required
@operation(200, TenantUsage,
           _l("A tenant's usage against its limits (RAM in MiB, disk in GB)"),
           notes=_l("Tenant administrators see their own tenant; platform administrators any, with ?tenant=slug."),
           query=TenantQuery, errors=[404])
def quota_usage():
    user = g.api_user
    slug = validated_query(TenantQuery).tenant
    tenant = user.tenant if not slug else get_tenant_by_slug(slug)
    if tenant is None or tenant.is_platform:
        raise NotFound(_("There is no such member tenant; pass %(query)s.", query="?tenant=<slug>"))
    if not (user.can_edit_quotas or (user.is_tenant_admin and user.can_manage_tenant(tenant))):
        raise NotPermitted(_("Only administrators of the tenant and platform administrators can see its usage."))
    limits = quota_service.limits_for_tenant(tenant.id)
    used = quota_service.usage_for_tenant(tenant.id)
    return jsonify({"tenant": tenant.slug, "resources": {
        r: {"tenant_limit": limits.tenant.get(r, 0), "per_user_limit": limits.per_user.get(r), "used": used[r]}
        for r in QUOTA_RESOURCES}})


@bp.route("/quota-increases")
@token_required
@operation(200, QuotaIncreasePage,
           _l("Quota-increase requests, newest first: the caller's own, or (platform admins) the open ones or all"),
           query=IncreasesQuery)
def list_quota_increases():
    scope = validated_query(IncreasesQuery).scope
    return page_json(quota_service.increases_listing(g.api_user, scope=scope), increase_json)


@bp.route("/quota-increases", methods=["POST"])
@token_required
@operation(201, QuotaIncrease,
           _l("Ask the platform administrators for more of the tenant's quota (extra amounts, and a reason)"),
           json=NewQuotaIncrease)
def create_quota_increase():
    data = validated_body(NewQuotaIncrease)
    increase = quota_service.create_increase(g.api_user, data.model_dump(exclude={"reason"}), data.reason)
    commit()
    response = jsonify(increase_json(increase))
    response.status_code = 201
    return response


@bp.route("/quota-increases/<int:increase_id>/<any(approve, decline):decision>", methods=["POST"])
@token_required
@operation(200, DecidedQuotaIncrease,
           _l("Approve (limits raised, OpenStack synced) or decline with a reason (platform admins)"),
           notes=_l("A decline needs a body with a reason; an approval needs no body."),
           json=Decision, body_optional=True, errors=[404])
def decide_quota_increase(increase_id: int, decision: str):
    reason = validated_body(Decision).reason
    outcome = quota_service.decide_increase(g.api_user, increase_id, decision, reason)
    return jsonify({**increase_json(outcome.increase), "cloud_sync_error": outcome.cloud_sync_error})


@bp.route("/requests", methods=["POST"])
@token_required
@operation(201, ServerRequestOut,
           _l("Order a VM or a desktop (checked and quota-reserved before anything is queued)"),
           notes=_l("Answers 201 with the request: pending_approval, or approved with provisioning queued."),
           json=NewRequest, errors=[409])
def create_request():
    data = validated_body(NewRequest)
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
@operation(200, ServerRequestPage,
           _l("Requests, newest first: the caller's, the tenant's or those waiting for the caller's approval"),
           query=RequestsQuery)
def list_requests():
    scope = validated_query(RequestsQuery).scope
    return page_json(orders.requests_listing(g.api_user, scope=scope), request_json)


@bp.route("/requests/<int:request_id>")
@token_required
@operation(200, ServerRequestDetail,
           _l("A request and the steps of its provisioning job"),
           errors=[404])
def get_request(request_id: int):
    return jsonify(request_json(orders.load_request(g.api_user, request_id), steps=True))


@bp.route("/requests/<int:request_id>/<any(approve, reject, cancel):decision>", methods=["POST"])
@token_required
@operation(200, ServerRequestOut,
           _l("Approve or reject (tenant admins), or cancel (the requester)"),
           notes=_l("A rejection needs a body with a reason; approving or cancelling needs no body."),
           json=Decision, body_optional=True, errors=[404, 409])
def decide(request_id: int, decision: str):
    user = g.api_user
    if decision == "approve":
        order = orders.approve(user, request_id)
    elif decision == "reject":
        order = orders.reject(user, request_id, validated_body(Decision).reason)
    else:
        order = orders.cancel(user, request_id)
    commit()
    return jsonify(request_json(order))


@bp.route("/servers")
@token_required
@operation(200, ServerPage,
           _l("Servers (not deleted): the caller's, the tenant's (admins) or all (platform admins), sorted"),
           query=ServersQuery)
def list_servers():
    args = validated_query(ServersQuery)
    listing = server_service.servers_listing(g.api_user, scope=args.scope, sort=args.sort,
                                             descending=args.dir == "desc")
    return page_json(listing, server_json)


@bp.route("/servers/<int:server_id>")
@token_required
@operation(200, ServerDetail,
           _l("A server as the portal knows it, with its office hours"),
           errors=[404])
def get_server(server_id: int):
    server = server_service.load_server(g.api_user, server_id)
    return jsonify({**server_json(server), "schedule": schedule_json(timed.schedule_for(server.id))})


@bp.route("/servers/<int:server_id>/actions", methods=["POST"])
@token_required
@operation(202, QueuedAction,
           _l("Start, stop, reboot, resize (with a size) or delete a server"),
           notes=_l("Answers 202: the action is queued; poll the server for its status."),
           json=ServerActionBody, errors=[404, 409])
def server_action(server_id: int):
    data = validated_body(ServerActionBody)
    server, job = server_service.request_action(g.api_user, server_id, data.action, new_size=data.size)
    commit()
    response = jsonify({"job": job.id, "server": server_json(server)})
    response.status_code = 202
    return response


@bp.route("/servers/<int:server_id>/schedule", methods=["PUT"])
@token_required
@operation(200, Schedule,
           _l("Set office hours: stop and/or start at local times (HH:MM) on the given days, in a time zone"),
           json=ScheduleBody, errors=[404])
def put_schedule(server_id: int):
    data = validated_body(ScheduleBody)
    row = timed.set_schedule(g.api_user, server_id, days=data.days, stop=data.stop, start=data.start,
                             timezone=data.timezone)
    commit()
    return jsonify(schedule_json(row))


@bp.route("/servers/<int:server_id>/schedule", methods=["DELETE"])
@token_required
@operation(204, None,
           _l("Remove the office hours (the server runs until someone stops it); 204 even if there were none"),
           errors=[404])
def delete_schedule(server_id: int):
    timed.clear_schedule(g.api_user, server_id)
    commit()
    return "", 204


@bp.route("/servers/<int:server_id>/extend", methods=["POST"])
@token_required
@operation(200, ServerOut,
           _l("Move the expiry to the end of a later day (within the organisation's longest lease)"),
           json=ExtendBody, errors=[404])
def extend_server(server_id: int):
    data = validated_body(ExtendBody)
    server = timed.extend_lease(g.api_user, server_id, data.until)
    commit()
    return jsonify(server_json(server))


@bp.route("/servers/<int:server_id>/transfer", methods=["POST"])
@token_required
@operation(200, ServerOut,
           _l("Give a server to another person of its organisation (tenant and platform admins)"),
           notes=_l("The quota hold and the charges move with it; 409 if the new owner's own limits have no room."),
           json=TransferBody, errors=[404, 409])
def server_transfer(server_id: int):
    data = validated_body(TransferBody)
    server = server_service.transfer_server(g.api_user, server_id, data.to)
    commit()  # queues the job that writes the new owner into Nova's metadata
    return jsonify(server_json(server))


@bp.route("/servers/<int:server_id>/console", methods=["POST"])
@token_required
@operation(200, ConsoleAddress,
           _l("A fresh browser console address (noVNC, one-off token) for a running server; audit-logged"),
           notes=_l("409 ``no_console`` when the cloud offers none right now."),
           errors=[404, 409, 502])
def server_console(server_id: int):
    url = server_service.console_url(g.api_user, server_id)
    if not url:
        db.session.rollback()
        return error(_("The cloud offers no console for this server right now; try again in a minute."),
                     409, ErrorCode.no_console)
    commit()
    return jsonify({"url": url})


@bp.route("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API, written from the models the views are checked against."""
    return jsonify(openapi_document(current_app))


@bp.route("/docs")
def docs():
    """The API's documentation for people, made from the same OpenAPI document."""
    return render_template("api/docs.html", **docs_context(current_app))

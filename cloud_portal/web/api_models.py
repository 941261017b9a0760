"""The REST API's contract as pydantic models: what clients send (bodies and query parameters) and
what they get back. The views validate traffic against them (web/api_spec.py) and the OpenAPI
document at /api/v1/openapi.json is written from them, so the two cannot drift apart.

Timestamps are ISO 8601 strings in UTC; amounts of money are decimal strings in GBP, exact to
the penny; RAM is in MiB and disk in GB.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Generic, Literal, TypeVar

from flask import jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from cloud_portal.paging import Listing, PageRequest, SeekPage, seek_page
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.leases import latest_job
from cloud_portal.quotas.models import QUOTA_RESOURCES, QuotaIncreaseRequest

API_PAGE_SIZE = 50


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "vm", "size": "small", "image": "debian-12", "data_hall": "local-government", "name": "web-1"},
        {"kind": "desktop", "size": "office-linux", "data_hall": "local-government", "name": "desk-1"}]})
    kind: Literal["vm", "desktop"]
    #: VM size key or desktop template key from /catalog.
    size: str = Field(max_length=40)
    #: Image key (VMs only; desktops come with theirs).
    image: str | None = Field(default=None, max_length=40)
    data_hall: str = Field(max_length=40)
    name: str = Field(max_length=200)
    #: E-mail address of the person of the tenant it is for (tenant admins only); default the caller.
    for_: str | None = Field(default=None, alias="for", max_length=254)
    #: The last day it is needed (required by some tenants for some sizes).
    expires_on: date | None = None


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "stop": "19:00", "start": "07:30"}]})
    #: Days it applies, e.g. ["mon", "tue", "wed", "thu", "fri"].
    days: list[str] = Field(min_length=1, max_length=7)
    #: Local times "HH:MM"; either may be null (that half is off).
    stop: str | None = Field(default=None, max_length=5)
    start: str | None = Field(default=None, max_length=5)
    timezone: str = Field(default="Europe/London", max_length=64)


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The last day the server is needed (it is stopped when that day ends, UK time).
    until: date


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: E-mail address of the person of the server's organisation who will own it.
    to: str = Field(min_length=3, max_length=254)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


class NewQuotaIncrease(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Extra amounts wanted on top of the tenant's limits (RAM in MiB, disk in GB); omit = none.
    instances: int | None = Field(default=None, ge=0, le=10_000_000)
    vcpus: int | None = Field(default=None, ge=0, le=10_000_000)
    ram_mib: int | None = Field(default=None, ge=0, le=10_000_000)
    disk_gb: int | None = Field(default=None, ge=0, le=10_000_000)
    desktops: int | None = Field(default=None, ge=0, le=10_000_000)
    reason: str = Field(max_length=1000)


class ServerActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "stop"}, {"action": "resize", "size": "medium"}]})
    action: Literal["start", "stop", "reboot", "resize", "delete"]
    size: str | None = Field(default=None, max_length=40)


# --- Query parameters -------------------------------------------------------------------------
# Unknown query parameters are ignored (as they always were); known ones are checked, so a value
# outside the allowed ones is a 400 naming the parameter and the choices.

#: A page cursor: opaque, from a previous page's ``next`` or ``prev``.
Cursor = Field(default=None, max_length=1000, description="a cursor from a previous page's next (as after) or "
               "prev (as before)")


class PageQuery(BaseModel):
    """Where a page of a list starts: the first page, ``after``/``before`` a cursor, or ``last``."""
    after: str | None = Cursor
    before: str | None = Cursor
    last: bool = Field(default=False, description="true for the last page")


class RequestsQuery(PageQuery):
    scope: Literal["mine", "tenant", "approvals"] = Field(
        default="mine", description="mine; the tenant's (admins); or those waiting for the caller's approval")


class ServersQuery(PageQuery):
    scope: Literal["mine", "tenant", "all"] = Field(
        default="mine", description="mine; the tenant's (admins); or every tenant's (platform admins)")
    sort: Literal["name", "created", "status", "size"] = "created"
    dir: Literal["desc", "asc"] = "desc"


class IncreasesQuery(PageQuery):
    scope: Literal["mine", "open", "all"] = Field(
        default="mine", description="mine; or open or all (platform admins)")


class TenantQuery(BaseModel):
    tenant: str | None = Field(default=None, max_length=64,
                               description="tenant slug (platform admins; default the caller's tenant)")


class StatementQuery(BaseModel):
    user: str | None = Field(default=None, max_length=254, description="e-mail address; default the caller")


class ExportQuery(BaseModel):
    format: Literal["csv", "xlsx", "pdf", "journal"] = Field(
        default="csv", description="csv or xlsx (lines), pdf (a tenant's statement) or journal (per cost centre)")
    tenant: str | None = Field(default=None, max_length=64, description="tenant slug; a pdf needs one")


# --- Answers -----------------------------------------------------------------------------------
ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """The envelope of every list: one page of up to 50 items, newest (or first in the sort) first.

    Pass ``next`` as ``?after=`` for the following page and ``prev`` as ``?before=`` for the
    previous one (each is null at its end of the list), or ``?last=true`` for the last page.
    ``total`` counts the whole list up to 1,000; beyond that ``total_is_lower_bound`` is true."""
    items: list[ItemT]
    total: int
    total_is_lower_bound: bool
    next: str | None
    prev: str | None


class Me(BaseModel):
    email: str
    role: Literal["member", "tenant_admin", "platform_admin", "finance"]
    #: The tenant's slug.
    tenant: str


class Offer(BaseModel):
    key: str
    name: str
    flavor: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    #: Price a month in GBP, e.g. "30.00".
    monthly_gbp: str
    image: str | None


class ImageOut(BaseModel):
    key: str
    name: str
    kind: str
    min_disk_gb: int


class Catalog(BaseModel):
    vm_sizes: list[Offer]
    desktops: list[Offer]
    images: list[ImageOut]
    #: The data halls the caller's tenant may use.
    data_halls: list[str]


class ResourceHeadroom(BaseModel):
    tenant_limit: int
    tenant_used: int
    #: Null when the tenant sets no per-person limit.
    user_limit: int | None
    user_used: int
    available: int


class Headroom(BaseModel):
    """Each quota resource: limits, usage (live resources and open reservations) and what is left."""
    instances: ResourceHeadroom
    vcpus: ResourceHeadroom
    ram_mib: ResourceHeadroom
    disk_gb: ResourceHeadroom
    desktops: ResourceHeadroom


class ResourceUsage(BaseModel):
    tenant_limit: int
    per_user_limit: int | None
    used: int


class ResourcesUsage(BaseModel):
    instances: ResourceUsage
    vcpus: ResourceUsage
    ram_mib: ResourceUsage
    disk_gb: ResourceUsage
    desktops: ResourceUsage


class TenantUsage(BaseModel):
    tenant: str
    resources: ResourcesUsage


class QuotaAmounts(BaseModel):
    instances: int | None
    vcpus: int | None
    ram_mib: int | None
    disk_gb: int | None
    desktops: int | None


class QuotaIncrease(BaseModel):
    id: int
    tenant: str
    requester: str
    #: Extra amounts asked for (null: none of that resource).
    wanted: QuotaAmounts
    reason: str
    state: Literal["open", "approved", "declined"]
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    created_at: str


class DecidedQuotaIncrease(QuotaIncrease):
    #: Why OpenStack's project quotas could not be updated (they are retried); null when they were.
    cloud_sync_error: str | None


class QuotaIncreasePage(Page[QuotaIncrease]):
    pass


class Step(BaseModel):
    task: str
    status: str
    at: str
    message: str | None


class ServerRequestOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: int
    kind: Literal["vm", "desktop"]
    name: str
    #: VM size or desktop template key.
    size: str
    image: str | None
    data_hall: str
    flavor: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    monthly_estimate_gbp: str
    state: Literal["pending_approval", "approved", "provisioning", "active", "rejected", "cancelled", "failed"]
    reason: str | None
    #: E-mail address of who asked.
    requester: str
    #: E-mail address of who it is for.
    for_: str = Field(alias="for")
    created_at: str
    server_id: int | None


class ServerRequestDetail(ServerRequestOut):
    #: The steps of its latest provisioning job, oldest first.
    steps: list[Step]


class ServerRequestPage(Page[ServerRequestOut]):
    pass


class ServerOut(BaseModel):
    id: int
    name: str
    kind: Literal["vm", "desktop"]
    status: str
    task: str | None
    flavor: str
    vcpus: int
    ram_mib: int
    disk_gb: int
    data_hall: str
    fixed_ip: str | None
    openstack_id: str | None
    #: E-mail address of the owner.
    owner: str
    #: What went wrong, in plain words (null when nothing did).
    problem: str | None
    expires_at: str | None
    created_at: str


class ServerPage(Page[ServerOut]):
    pass


class Schedule(BaseModel):
    days: list[str]
    stop: str | None
    start: str | None
    timezone: str
    next_action: Literal["stop", "start"] | None
    next_at: str | None
    last_note: str | None


class ServerDetail(ServerOut):
    #: Office hours; null when it has none.
    schedule: Schedule | None


class QueuedAction(BaseModel):
    #: The id of the queued job.
    job: str
    server: ServerOut


class ConsoleAddress(BaseModel):
    url: str


class BillingMonth(BaseModel):
    month: str = Field(description="YYYY-MM")
    closed: bool
    closed_at: str | None
    closed_by: str | None


class BillingMonthPage(Page[BillingMonth]):
    pass


class TenantTotal(BaseModel):
    tenant: str
    cost_centre: str | None
    total_gbp: str


class TenantTotalPage(Page[TenantTotal]):
    month: str
    #: True when the month is closed (final); false: month to date.
    closed: bool


class StatementLine(BaseModel):
    server_id: int
    component: str
    rate_key: str
    rate_from: str
    quantity: str
    unit: str
    rate_gbp: str
    amount_gbp: str
    #: For an adjustment, the closed month it corrects.
    adjusts_month: str | None


class Statement(BaseModel):
    month: str
    closed: bool
    user: str
    lines: list[StatementLine]
    total_gbp: str


class ClosedMonth(BaseModel):
    month: str
    already_closed: bool
    #: Statement lines written.
    lines: int
    total_gbp: str
    #: Adjustment lines written to this month for earlier closed months.
    adjustments: int


def page_json(listing: Listing[Any], item_json: Callable[[Any], dict[str, Any]]) -> Any:
    """One page (50 rows; ``?after=``/``?before=`` a cursor, or ``?last=true``) of a listing as a
    Page: ``{items, total, total_is_lower_bound, next, prev}``."""
    page = seek_page(listing, page_request(), API_PAGE_SIZE)
    return jsonify(page_envelope(page, item_json))


def page_request() -> PageRequest:
    """Where the requested page starts, from the query parameters as PageQuery checked them."""
    query = request.context.query  # type: ignore[attr-defined]
    assert isinstance(query, PageQuery)
    return PageRequest.from_args({"after": query.after or "", "before": query.before or "",
                                  "last": "true" if query.last else ""})


def page_envelope(page: SeekPage[Any], item_json: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A page as the Page envelope: ``next``/``prev`` are the cursors to pass as ``after``/``before``
    (null at the ends); ``total`` counts up to paging.COUNT_CAP."""
    return {"items": [item_json(row) for row in page.items], "total": page.total,
            "total_is_lower_bound": page.total_is_lower_bound,
            "next": page.next_cursor if page.has_next else None,
            "prev": page.prev_cursor if page.has_prev else None}


def request_json(r: m.ServerRequest, steps: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id, "kind": r.kind, "name": r.name, "size": r.catalog_key, "image": r.image_key,
        "data_hall": r.data_hall, "flavor": r.flavor, "vcpus": r.vcpus, "ram_mib": r.ram_mib, "disk_gb": r.disk_gb,
        "monthly_estimate_gbp": str(r.monthly_estimate), "state": r.state, "reason": r.reason,
        "requester": r.requester.email, "for": r.owner.email, "created_at": r.created_at.isoformat(),
        "server_id": r.server.id if r.server else None,
    }
    if steps:
        job = latest_job(request_id=r.id)
        out["steps"] = [{"task": s.task, "status": s.status, "at": s.at.isoformat(), "message": s.message}
                        for s in (job.steps if job else [])]
    return out


def server_json(s: m.Server) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "kind": s.kind, "status": s.status, "task": s.task, "flavor": s.flavor,
            "vcpus": s.vcpus, "ram_mib": s.ram_mib, "disk_gb": s.disk_gb, "data_hall": s.data_hall,
            "fixed_ip": s.fixed_ip, "openstack_id": s.openstack_id, "owner": s.owner.email, "problem": s.problem,
            "expires_at": s.expires_at.isoformat() if s.expires_at else None,
            "created_at": s.created_at.isoformat()}


def schedule_json(row: m.ServerSchedule | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"days": row.days, "stop": row.stop_at, "start": row.start_at, "timezone": row.timezone,
            "next_action": row.next_action, "next_at": row.next_at.isoformat() if row.next_at else None,
            "last_note": row.last_note}


def increase_json(i: QuotaIncreaseRequest) -> dict[str, Any]:
    return {"id": i.id, "tenant": i.tenant.slug, "requester": i.requester.email,
            "wanted": {r: getattr(i, r) for r in QUOTA_RESOURCES}, "reason": i.reason, "state": i.state,
            "decided_by": i.decided_by.email if i.decided_by else None,
            "decided_at": i.decided_at.isoformat() if i.decided_at else None,
            "decision_reason": i.decision_reason, "created_at": i.created_at.isoformat()}

"""The REST API's bodies and answers: pydantic models for what clients send, and the JSON shapes
of what they get back (used by web/api.py and its OpenAPI document)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from flask import jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from cloud_portal.paging import Listing, PageRequest, seek_page
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.leases import latest_job
from cloud_portal.quotas.models import QUOTA_RESOURCES, QuotaIncreaseRequest

API_PAGE_SIZE = 50


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
    model_config = ConfigDict(extra="forbid")
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
    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "stop", "reboot", "resize", "delete"]
    size: str | None = Field(default=None, max_length=40)


def page_json(listing: Listing[Any], item_json: Callable[[Any], dict[str, Any]]) -> Any:
    """One page (50 rows; ``?after=``/``?before=`` a cursor, or ``?last=1``) of a listing as
    ``{items, total, total_is_lower_bound, next, prev}``: ``next``/``prev`` are the cursors to
    pass as ``after``/``before`` (null at the ends); ``total`` counts up to paging.COUNT_CAP."""
    page = seek_page(listing, PageRequest.from_args(request.args), API_PAGE_SIZE)
    return jsonify({"items": [item_json(row) for row in page.items], "total": page.total,
                    "total_is_lower_bound": page.total_is_lower_bound,
                    "next": page.next_cursor if page.has_next else None,
                    "prev": page.prev_cursor if page.has_prev else None})


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

"""Requests without a cloud: validation, approval thresholds, quota holds, API auth and OpenAPI."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.validation import validate_hostname
from cloud_portal.quotas.service import usage_for_tenant
from tests.helpers import create_user, sign_in


@pytest.mark.parametrize("name", ["web-01", "A1", "x" * 63, "db"])
def test_valid_hostnames(name: str) -> None:
    assert validate_hostname(name) == name.lower()


@pytest.mark.parametrize("name,message", [
    ("", "Enter a name"), ("x" * 64, "64 characters long; the most is 63"), ("web_01", "'_'"),
    ("wеb", "only the letters"), ("-a", "hyphen"), ("a-", "hyphen"), ("a b", "' '"), ("a\x00b", "U+0000"),
    ("{{x}}", "'{'"),
])
def test_invalid_hostnames(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        validate_hostname(name)


@pytest.fixture
def queued_app(make_app: Any, tmp_path: Any) -> Any:
    """Jobs go to a real SQLite queue that nothing consumes, so no cloud is needed."""
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="")
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        yield app


def test_request_form_and_queueing(queued_app: Any) -> None:
    from cloud_portal.adapters.queue import huey
    member = create_user("member", "torfaen")
    client = queued_app.test_client()
    sign_in(client, member.email)
    form = client.get("/requests/new/vm").get_data(as_text=True)
    # The form shows the tenant's headroom and the sizes by their names, never the flavor names.
    assert "Room left" in form and "Small" in form and "cc.small" not in form
    huey.flush()
    response = client.post("/requests/new/vm", data={"name": "Web-01", "catalog_key": "small",
                                                     "image_key": "debian-12", "data_hall": "local-government"})
    assert response.status_code == 302
    request = db.session.scalar(select(m.ServerRequest))
    assert request.name == "web-01" and request.state == "approved" and request.flavor == "cc.small"
    assert huey.pending_count() == 1  # the provision job waits for a worker
    assert usage_for_tenant(member.tenant_id)["instances"] == 1
    page = client.get(f"/requests/{request.id}/progress.json").get_json()
    assert page["state"] == "approved"
    client.post(f"/requests/{request.id}/cancel")
    db.session.expire_all()
    assert db.session.get(m.ServerRequest, request.id).state == "cancelled"
    assert usage_for_tenant(member.tenant_id)["instances"] == 0


def test_desktop_and_threshold(queued_app: Any) -> None:
    member = create_user("member", "blaenau-gwent")
    client = queued_app.test_client()
    sign_in(client, member.email)
    client.post("/requests/new/vm", data={"name": "big", "catalog_key": "xlarge", "image_key": "rocky-9",
                                          "data_hall": "local-government"})
    client.post("/requests/new/desktop", data={"name": "desk", "catalog_key": "office-windows",
                                               "data_hall": "local-government"})
    states = dict(db.session.execute(select(m.ServerRequest.name, m.ServerRequest.state)).all())
    assert states == {"big": "pending_approval", "desk": "approved"}
    desk = db.session.scalar(select(m.ServerRequest).where(m.ServerRequest.name == "desk"))
    assert desk.image_key == "desktop-windows" and desk.kind == "desktop"


def test_other_tenants_requests_are_invisible(queued_app: Any) -> None:
    member = create_user("member", "torfaen")
    outsider = create_user("tenant_admin", "nhs-wales")
    client = queued_app.test_client()
    sign_in(client, member.email)
    client.post("/requests/new/vm", data={"name": "mine", "catalog_key": "small", "image_key": "debian-12",
                                          "data_hall": "local-government"})
    request_id = db.session.scalar(select(m.ServerRequest.id))
    other = queued_app.test_client()
    sign_in(other, outsider.email)
    assert other.get(f"/requests/{request_id}").status_code == 404
    assert other.post(f"/requests/{request_id}/cancel").status_code == 302
    db.session.expire_all()
    assert db.session.get(m.ServerRequest, request_id).state == "approved"


def test_api_requires_a_valid_token(queued_app: Any) -> None:
    member = create_user("member", "torfaen")
    client = queued_app.test_client()
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer cwc_nonsense"}).status_code == 401
    token = create_api_token(None, member, "script")
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=headers).get_json() == {
        "email": member.email, "role": "member", "tenant": "torfaen"}
    bad = client.post("/api/v1/requests", json={"kind": "vm", "size": "small", "data_hall": "x", "name": "a",
                                                "colour": "red"}, headers=headers)
    assert bad.status_code == 400 and "colour" in bad.get_json()["error"]
    not_json = client.post("/api/v1/requests", data="kind=vm", headers=headers)
    assert not_json.status_code == 400 and "JSON object" in not_json.get_json()["error"]
    from cloud_portal.accounts.service import set_active
    set_active(None, member, False)
    db.session.commit()
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_quota_refusal_through_the_api(queued_app: Any) -> None:
    from cloud_portal.quotas.models import QuotaLimit
    member = create_user("member", "torfaen")
    limit = db.session.scalar(select(QuotaLimit).where(QuotaLimit.tenant_id == member.tenant_id,
                                                       QuotaLimit.scope == "tenant", QuotaLimit.resource == "instances"))
    limit.limit = 1
    db.session.commit()
    token = create_api_token(None, member, "script")
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    client = queued_app.test_client()
    payload = {"kind": "vm", "size": "small", "image": "debian-12", "data_hall": "local-government", "name": "one"}
    assert client.post("/api/v1/requests", json=payload, headers=headers).status_code == 201
    refused = client.post("/api/v1/requests", json={**payload, "name": "two"}, headers=headers)
    assert refused.status_code == 409
    assert "has 0 of 1" in refused.get_json()["error"] and refused.get_json()["code"] == "quota_exceeded"
    assert db.session.scalar(select(func.count()).select_from(m.ServerRequest)) == 1


def test_openapi_document_lists_the_api(client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/requests" in doc["paths"] and "post" in doc["paths"]["/api/v1/requests"]
    assert "NewRequest" in doc["components"]["schemas"]


def test_a_job_whose_queue_message_was_lost_is_enqueued_again_and_runs_once(app: Any, make_user: Any) -> None:
    """The jobs table is the record: a job still queued after the threshold (its message lost
    between the commit and the enqueue, or with a queue restart) is enqueued again by
    reconciliation, and however many messages then arrive, only one claim wins."""
    from datetime import timedelta

    from cloud_portal.adapters.cloud import CloudContext
    from cloud_portal.provisioning import leases
    from cloud_portal.provisioning import models as pm
    from cloud_portal.provisioning.reconcile import requeue_lost_jobs
    from cloud_portal.timeutil import frozen_at
    from tests.helpers import utc
    member = make_user("member", "torfaen")
    with frozen_at(utc("2027-01-10T10:00:00")):
        lost = pm.Job(id="lost-1", kind=pm.JOB_ACTION, action="stop", state=pm.JOB_QUEUED, tenant_id=member.tenant_id)
        fresh = pm.Job(id="fresh-1", kind=pm.JOB_ACTION, action="stop", state=pm.JOB_QUEUED, tenant_id=member.tenant_id,
                       created_at=utc("2027-01-10T10:04:30"))
        done = pm.Job(id="done-1", kind=pm.JOB_ACTION, action="stop", state=pm.JOB_SUCCEEDED,
                      tenant_id=member.tenant_id)
        db.session.add_all([lost, fresh, done])
        db.session.commit()
    enqueued: list[str] = []
    with frozen_at(utc("2027-01-10T10:05:01")):
        assert requeue_lost_jobs(lambda job: enqueued.append(job.id), timedelta(minutes=5)) == ["lost-1"]
    assert enqueued == ["lost-1"]
    ctx = CloudContext(cloud=None, clouds_yaml=Path("/nonexistent"), cloud_name="x", network="n",  # type: ignore[arg-type]
                       runs_dir=Path("/tmp"), provision_timeout_s=60, action_timeout_s=60, job_lease_s=60)
    # The original message and the new one both reach workers: one claim wins, the other finds it taken.
    assert leases.claim(lost, ctx, tenant_limit=4) is True
    assert leases.claim(lost, ctx, tenant_limit=4) is False
    assert db.session.get(pm.Job, "lost-1").attempts == 1

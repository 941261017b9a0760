"""The single paths: server state changes only through transition(), requests move only by the
lifecycle table, and jobs reach the queue only after their rows are committed."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.adapters.openstack import ServerInfo
from cloud_portal.errors import InvalidInput, NotPermitted, PortalError
from cloud_portal.extensions import db
from cloud_portal.provisioning import leases, lifecycle, servers
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import requests as orders
from cloud_portal.unit_of_work import commit, discard_pending, pending_count


def _order(user: Any, name: str = "web-1", size: str = "small", image: str = "debian-12") -> m.ServerRequest:
    request = orders.submit_request(user, kind="vm", catalog_key=size, image_key=image,
                                    data_hall="local-government", name=name)
    db.session.commit()
    discard_pending()
    return request


def _server_for(request: m.ServerRequest) -> m.Server:
    info = ServerInfo(id=f"nova-{request.id}", name=request.name, status="ACTIVE", project_id="p",
                      flavor_name=request.flavor, availability_zone=request.data_hall, fixed_ip="10.0.0.5", fault=None)
    request.state = m.PROVISIONING
    server = servers.create_from_request(request, info)
    db.session.commit()
    return server


def test_server_state_changes_only_through_transition(make_user: Any) -> None:
    member = make_user("member", "torfaen")
    server = _server_for(_order(member))
    assert server.status == "ACTIVE" and server.owner_id == member.id
    seen: list[servers.Change] = []
    servers.on_transition(seen.append)
    try:
        server.status = "SHUTOFF"  # behind transition()'s back: billing would never know
        with pytest.raises(RuntimeError, match="outside provisioning.servers.transition"):
            db.session.commit()
        db.session.rollback()
        server.vcpus = 64
        with pytest.raises(RuntimeError, match="Server.vcpus"):
            db.session.flush()
        db.session.rollback()
        when = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
        servers.transition(server, cause="stop", at=when, status="SHUTOFF")
        db.session.commit()
    finally:
        servers._listeners.remove(seen.append)
    db.session.expire_all()
    assert db.session.get(m.Server, server.id).status == "SHUTOFF"
    assert [(c.before, c.after, c.at, c.cause) for c in seen] == [
        ({"status": "ACTIVE"}, {"status": "SHUTOFF"}, when, "stop")]
    # The listener runs inside the change's transaction: a rollback undoes both.
    servers.transition(server, cause="delete", status=m.SERVER_DELETED)
    assert server.deleted_at is not None
    db.session.rollback()
    assert db.session.get(m.Server, server.id).status == "SHUTOFF"


def test_request_lifecycle_table(make_user: Any) -> None:
    member = make_user("member", "blaenau-gwent")
    admin = make_user("tenant_admin", "blaenau-gwent")
    outsider = make_user("tenant_admin", "nhs-wales")
    waiting = _order(member, "big", size="xlarge", image="rocky-9")  # over the tenant's threshold
    assert waiting.state == m.PENDING_APPROVAL
    assert waiting.can_decide(admin) and not waiting.can_decide(member) and not waiting.can_view(outsider)
    with pytest.raises(NotPermitted, match="Only an administrator of the tenant can approve"):
        orders.approve(member, waiting.id)
    with pytest.raises(PortalError, match="no such request"):
        orders.approve(outsider, waiting.id)
    orders.approve(admin, waiting.id)
    commit()
    with pytest.raises(InvalidInput, match="This request is approved; only waiting requests can be approved"):
        orders.approve(admin, waiting.id)
    with pytest.raises(InvalidInput, match="Only waiting requests can be rejected"):
        orders.reject(admin, waiting.id, "too big")
    with pytest.raises(InvalidInput, match="Only failed requests can be cleaned up"):
        orders.dismiss_failed(member, waiting.id)
    # The system's own moves need no person but keep to the table too.
    lifecycle.advance(waiting, lifecycle.START)
    assert waiting.state == m.PROVISIONING
    with pytest.raises(InvalidInput):
        lifecycle.advance(waiting, lifecycle.CANCEL, member)
    lifecycle.advance(waiting, lifecycle.FAIL)
    lifecycle.advance(waiting, lifecycle.CLEAN_UP, member)
    assert waiting.state == m.CANCELLED
    # Every state the model knows is a target of some transition (nothing is set by hand).
    targets = {t.target for t in lifecycle.TRANSITIONS.values()} | {m.PENDING_APPROVAL, m.APPROVED}
    assert set(m.OPEN_REQUEST_STATES) | set(m.END_REQUEST_STATES) <= targets


def test_jobs_are_enqueued_only_after_commit(make_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[tuple[str, str]] = []

    def enqueue(job: m.Job) -> None:
        # The row must already be committed: another connection would see it now.
        with db.engine.connect() as other:
            found = other.execute(select(m.Job.id).where(m.Job.id == job.id)).scalar()
        queued.append((job.kind, str(found)))

    monkeypatch.setattr(leases, "_enqueuer", enqueue)
    member = make_user("member", "torfaen")
    request = orders.submit_request(member, kind="vm", catalog_key="small", image_key="debian-12",
                                    data_hall="local-government", name="web-1")
    assert pending_count() == 1 and queued == []
    commit()
    job = leases.latest_job(request_id=request.id)
    assert job is not None and queued == [(m.JOB_PROVISION, job.id)]
    orders.submit_request(member, kind="vm", catalog_key="small", image_key="debian-12",
                          data_hall="local-government", name="web-2")
    db.session.rollback()  # the operation failed after the service call: nothing may be queued
    assert pending_count() == 0
    commit()
    assert len(queued) == 1

"""The ledger against Nova: a VM made, stopped, started, resized and deleted through the portal has
intervals whose boundaries are within 5 s of Nova's own times, and the Nova cross-check agrees."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.adapters.cloud import cloud
from cloud_portal.billing import charges
from cloud_portal.billing.crosscheck import cross_check
from cloud_portal.billing.models import UsageInterval
from cloud_portal.billing.months import billing_zone
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.timeutil import utcnow
from tests.helpers import sign_in

pytestmark = pytest.mark.integration
CLOSE = timedelta(seconds=5)


def _nova_time(value: str | None) -> datetime | None:
    from cloud_portal.adapters.openstack import _nova_time as parse
    return parse(value)


def _finished(conn: Any, server_id: str, action: str) -> datetime:
    """When Nova finished ``action`` on the server (its last event's finish time)."""
    for item in conn.compute.server_actions(server_id):
        if item.action == action:
            detail = conn.compute.get_server_action(item.request_id, server_id)
            finishes = [_nova_time(e["finish_time"]) for e in (detail.events or []) if e.get("finish_time")]
            return max(f for f in finishes if f) if finishes else _nova_time(item.start_time)  # type: ignore[return-value]
    raise AssertionError(f"Nova has no {action} action for {server_id}")


def _ordered_through_the_web(app: Any, member: Any, name: str) -> tuple[Any, m.Server]:
    """A signed-in client and the small VM it ordered (provisioned inline: the queue is immediate)."""
    client = app.test_client()
    sign_in(client, member.email)
    assert client.post("/requests/new/vm", data={"name": name, "catalog_key": "small", "image_key": "debian-12",
                                                 "data_hall": "local-government"}).status_code == 302
    server = db.session.scalar(select(m.Server).where(m.Server.name == name))
    assert server is not None and server.status == "ACTIVE"
    return client, server


def test_ledger_matches_nova(cloud_app: Any, make_user: Any, sandbox_cloud: Any, unique_name: Any) -> None:
    client, server = _ordered_through_the_web(cloud_app, make_user("member", "monmouthshire"), unique_name("bill"))
    for action, form in (("stop", {}), ("start", {}), ("resize", {"size": "medium"}), ("delete", {})):
        assert client.post(f"/servers/{server.id}/{action}", data=form).status_code == 302
        db.session.expire_all()
        assert db.session.get(m.Server, server.id).problem is None
    assert db.session.get(m.Server, server.id).status == "DELETED"

    conn = sandbox_cloud.connect()
    rows = list(db.session.scalars(select(UsageInterval).where(UsageInterval.server_id == server.id)
                                   .order_by(UsageInterval.started_at, UsageInterval.id)))
    # created (running, small) → stopped → running → running (medium) → deleted
    assert [(r.state, r.vcpus) for r in rows] == [("running", 1), ("stopped", 1), ("running", 1), ("running", 2)]
    deleted_server = conn.compute.get_usage(conn.identity.find_project(f"cwmwl-{server.tenant.slug}").id,
                                            start=(utcnow() - timedelta(hours=1)).replace(tzinfo=None),
                                            end=(utcnow() + timedelta(minutes=1)).replace(tzinfo=None))
    usage = {u["instance_id"]: u for u in deleted_server.server_usages}[server.openstack_id]
    # (Nova's usage started_at is the last launch, which a resize moves: use the create action.)
    nova = {"create": _finished(conn, server.openstack_id, "create"), "stop": _finished(conn, server.openstack_id, "stop"),
            "start": _finished(conn, server.openstack_id, "start"),
            "resize": _finished(conn, server.openstack_id, "confirmResize"),
            "delete": _nova_time(usage["ended_at"])}
    ours = {"create": rows[0].started_at, "stop": rows[1].started_at, "start": rows[2].started_at,
            "resize": rows[3].started_at, "delete": rows[3].ended_at}
    for event, when in ours.items():
        assert when is not None and nova[event] is not None
        assert abs(when - nova[event]) <= CLOSE, f"{event}: ledger {when}, Nova {nova[event]}"

    month = charges.month_of(rows[0].started_at, billing_zone())
    differences = cross_check(cloud.required(), month)
    assert [d for d in differences if d.openstack_id == server.openstack_id] == []


def test_deleted_outside_the_portal_ends_when_nova_deleted_it(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                                              unique_name: Any) -> None:
    from cloud_portal.jobs.provisioning import reconcile_now
    from cloud_portal.timeutil import frozen_at
    _, server = _ordered_through_the_web(cloud_app, make_user("member", "monmouthshire"), unique_name("oob"))
    conn = sandbox_cloud.connect()
    conn.compute.delete_server(server.openstack_id)
    conn.compute.wait_for_delete(conn.compute.get_server(server.openstack_id), interval=0.5, wait=60)
    # Reconciliation notices an hour later (the portal's clock moved on): billing still ends at Nova's time.
    with frozen_at(utcnow() + timedelta(hours=1)):
        reconcile_now()
    db.session.expire_all()
    row = db.session.scalar(select(UsageInterval).where(UsageInterval.server_id == server.id))
    usage = {u["instance_id"]: u for u in conn.compute.get_usage(
        conn.identity.find_project(f"cwmwl-{server.tenant.slug}").id, start=(utcnow() - timedelta(hours=1)).replace(tzinfo=None),
        end=(utcnow() + timedelta(minutes=1)).replace(tzinfo=None)).server_usages}[server.openstack_id]
    terminated = _nova_time(usage["ended_at"])
    assert row.ended_at is not None and terminated is not None and abs(row.ended_at - terminated) <= CLOSE
    assert db.session.get(m.Server, server.id).status == "DELETED"

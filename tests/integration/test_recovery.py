"""Failure handling against the sandbox: nova-api down, worker killed mid-job, reconciliation."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.errors import TransientJobError
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.actions import perform_action
from cloud_portal.provisioning.provision import provision
from cloud_portal.provisioning.reconcile import reconcile
from cloud_portal.provisioning.requests import submit_request
from cloud_portal.provisioning.servers import request_action
from cloud_portal.quotas.service import usage_for_tenant
from cloud_portal.timeutil import utcnow
from cloud_portal.unit_of_work import discard_pending
from tests.fixtures.sandbox import start_sandbox

pytestmark = pytest.mark.integration
SANDBOX_HOME = Path(os.environ.get("CLOUD_PORTAL_SANDBOX_HOME") or Path.home() / ".cache/cloud-portal/sandbox")


def _submit(user: Any, name: str, size: str = "small", hall: str = "local-government") -> m.ServerRequest:
    request = submit_request(user, kind="vm", catalog_key=size, image_key="debian-12", data_hall=hall, name=name)
    db.session.commit()
    discard_pending()  # these tests run the provision job themselves
    return request


def _servers_for_request(sandbox_cloud: Any, request_uid: str) -> list[Any]:
    conn = sandbox_cloud.connect()
    return [s for s in conn.compute.servers(details=True, all_projects=True)
            if (s.metadata or {}).get("portal_request_id") == f"request-{request_uid}"]


def _stop_service(name: str) -> None:
    pid = int((SANDBOX_HOME / "run" / f"{name}.pid").read_text().split()[0])
    os.killpg(os.getpgid(pid), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not stop")


def test_nova_api_down_fails_readably_and_leaves_nothing(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                                         unique_name: Any) -> None:
    member = make_user("member", "monmouthshire")
    request = _submit(member, unique_name("noapi"))
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    _stop_service("nova-api")
    try:
        state = provision(request.id, ctx, tenant_limit=4, final_attempt=True)
    finally:
        start_sandbox()  # brings nova-api back (sandboxctl start is idempotent)
    assert state == "failed"
    db.session.expire_all()
    failed = db.session.get(m.ServerRequest, request.id)
    assert failed.reason == ("The cloud did not answer in time, so nothing was created. "
                             "Please try again in a few minutes.")
    assert usage_for_tenant(member.tenant_id)["instances"] == 0
    reconcile(ctx, resume=lambda job: None)
    assert _servers_for_request(sandbox_cloud, request.uid) == []


def test_transient_error_is_retried_not_failed(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                               unique_name: Any) -> None:
    member = make_user("member", "monmouthshire")
    request = _submit(member, unique_name("retry"))
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    _stop_service("nova-api")
    try:
        with pytest.raises(TransientJobError):
            provision(request.id, ctx, tenant_limit=4, final_attempt=False)
    finally:
        start_sandbox()
    db.session.expire_all()
    assert db.session.get(m.ServerRequest, request.id).state == "provisioning"
    assert provision(request.id, ctx, tenant_limit=4, final_attempt=True) == "active"
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    # Delete it for real (not only queue the delete), so no server is left counting against the
    # shared project's quota in Nova for the tests that come after.
    _, job = request_action(member, server.id, "delete")
    db.session.commit()
    perform_action(job.id, ctx, tenant_limit=4, final_attempt=True)
    assert _servers_for_request(sandbox_cloud, request.uid) == []


def test_worker_killed_mid_job_gives_exactly_one_server(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                                       unique_name: Any, database_url: str, tmp_path: Path) -> None:
    from cloud_portal.adapters.queue import configure_queue, huey
    cloud_app.config.update(QUEUE_IMMEDIATE=False, QUEUE_URL="", JOB_LEASE_SECONDS=5)
    configure_queue(cloud_app)
    huey.flush()
    member = make_user("member", "swansea-university")
    request = _submit(member, unique_name("crash"), hall="education")
    from cloud_portal.jobs.provisioning import provision_request
    provision_request(request.id)
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": cloud_app.instance_path, "CLOUD_PORTAL_DATABASE_URL": database_url,
           "CLOUD_PORTAL_CLOUDS_YAML": str(sandbox_cloud.clouds_yaml), "CLOUD_PORTAL_JOB_LEASE_SECONDS": "5",
           "CLOUD_PORTAL_RECONCILE_INTERVAL_MINUTES": "0", "CLOUD_PORTAL_SECRET_KEY": "w" * 40}
    worker = [sys.executable, "-m", "cloud_portal.cli", "worker", "--threads", "2"]
    first = subprocess.Popen(worker, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it while the playbook is booting the server
            db.session.expire_all()
            if db.session.scalar(select(m.JobStep.id).join(m.Job).where(
                    m.Job.request_id == request.id, m.JobStep.task == "Boot server", m.JobStep.status == "started")):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the worker never started the playbook")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    db.session.expire_all()
    assert db.session.get(m.ServerRequest, request.id).state == "provisioning"
    # The killed worker renews nothing any more: end its job's lease now rather than waiting for it.
    db.session.execute(update(m.Job).where(m.Job.request_id == request.id, m.Job.state == m.JOB_RUNNING)
                       .values(deadline_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    second = subprocess.Popen(worker, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        from cloud_portal.jobs.provisioning import reconcile_now
        report = reconcile_now()
        jobs = [(j.state, j.attempts, j.deadline_at) for j in db.session.scalars(select(m.Job))]
        assert report.resumed_jobs, f"reconciliation did not resume the interrupted job: {jobs}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(m.ServerRequest, request.id).state in ("active", "failed"):
                break
            time.sleep(0.5)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    db.session.expire_all()
    assert db.session.get(m.ServerRequest, request.id).state == "active"
    servers = _servers_for_request(sandbox_cloud, request.uid)
    assert len(servers) == 1, [s.id for s in servers]
    cloud_app.config.update(QUEUE_IMMEDIATE=True)
    configure_queue(cloud_app)
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    _, job = request_action(member, server.id, "delete")
    db.session.commit()
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    perform_action(job.id, ctx, tenant_limit=4, final_attempt=True)


def test_reconciliation_after_out_of_band_changes(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                                 unique_name: Any) -> None:
    member = make_user("member", "gwent-police")
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    one = _submit(member, unique_name("oob"), hall="police")
    two = _submit(member, unique_name("oob"), hall="police")
    for request in (one, two):
        assert provision(request.id, ctx, tenant_limit=4, final_attempt=True) == "active"
    db.session.expire_all()
    first = db.session.scalar(select(m.Server).where(m.Server.request_id == one.id))
    second = db.session.scalar(select(m.Server).where(m.Server.request_id == two.id))
    conn = sandbox_cloud.connect()
    conn.compute.stop_server(first.openstack_id)
    conn.compute.wait_for_server(conn.compute.get_server(first.openstack_id), status="SHUTOFF", wait=60, interval=0.5)
    conn.compute.delete_server(second.openstack_id)
    conn.compute.wait_for_delete(conn.compute.get_server(second.openstack_id), wait=60, interval=0.5)
    project = conn.identity.find_project("cwmwl-gwent-police")
    police = sandbox_cloud.connect(project_name="cwmwl-gwent-police", project_domain_name="Default")
    stranger = police.compute.create_server(name=unique_name("stranger"), flavor_id=conn.compute.find_flavor("cc.small").id,
                                            image_id=conn.image.find_image("debian-12").id,
                                            networks=[{"uuid": conn.network.find_network("shared-net").id}])
    try:
        report = reconcile(ctx, resume=lambda job: None)
        db.session.expire_all()
        assert db.session.get(m.Server, first.id).status == "SHUTOFF"
        assert db.session.get(m.Server, second.id).status == "DELETED"
        assert usage_for_tenant(member.tenant_id)["instances"] == 1
        assert any(stranger.id in line for line in report.findings)
        finding = db.session.scalar(select(m.ReconcileFinding).where(m.ReconcileFinding.openstack_id == stranger.id))
        assert finding.kind == "unknown_server" and finding.tenant_id == member.tenant_id
        assert conn.compute.get_server(stranger.id).project_id == project.id
        again = reconcile(ctx, resume=lambda job: None)  # a second run finds nothing new
        assert again.findings == [] and again.updated == []
    finally:
        conn.compute.delete_server(stranger.id)
        _, job = request_action(member, first.id, "delete")
        db.session.commit()
        perform_action(job.id, ctx, tenant_limit=4, final_attempt=True)

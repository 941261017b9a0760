"""Faults that must lose nothing, against the sandbox cloud and real services.

Redis and PostgreSQL here are the tests' own (tests/fixtures/own_services.py), on their own
loopback ports, so stopping and restarting them never disturbs the machine's servers. Each test
checks the database and the cloud: one server per request, quota released once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import TransientJobError
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.actions import perform_action
from cloud_portal.provisioning.provision import provision
from cloud_portal.provisioning.servers import request_action
from cloud_portal.quotas.service import usage_for_tenant
from cloud_portal.timeutil import utcnow
from cloud_portal.unit_of_work import commit, discard_pending
from tests.fixtures.sandbox import start_sandbox
from tests.helpers import create_user, sign_in
from tests.integration.test_recovery import _servers_for_request, _stop_service, _submit

pytestmark = pytest.mark.integration

# A worker that is SIGKILLed as soon as a playbook has succeeded: the cloud has done the work,
# the database has not been told. (Patched in the worker process only; the product has no hook.)
_DIE_AFTER_PLAYBOOK = """
import os, signal, sys
from cloud_portal.provisioning import leases
_run = leases.run_playbook
def _run_then_die(*args, **kwargs):
    result = _run(*args, **kwargs)
    if result.ok:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
leases.run_playbook = _run_then_die
from cloud_portal.cli import main
sys.argv = ["cloud-portal", "worker", "--threads", "2"]
main()
"""
_WORKER = [sys.executable, "-m", "cloud_portal.cli", "worker", "--threads", "2"]


def _worker_env(app: Any, sandbox_cloud: Any, database_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": app.instance_path, "CLOUD_PORTAL_DATABASE_URL": database_url,
            "CLOUD_PORTAL_CLOUDS_YAML": str(sandbox_cloud.clouds_yaml), "CLOUD_PORTAL_JOB_LEASE_SECONDS": "5",
            "CLOUD_PORTAL_RECONCILE_INTERVAL_MINUTES": "0", "CLOUD_PORTAL_SECRET_KEY": "w" * 40,
            "CLOUD_PORTAL_QUEUE_URL": app.config["QUEUE_URL"], **extra}


@contextmanager
def _worker(env: dict[str, str], command: list[str] = _WORKER, log: Path | None = None) -> Iterator[Any]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _use_queue(app: Any, url: str) -> None:
    from cloud_portal.adapters.queue import configure_queue, huey
    app.config.update(QUEUE_IMMEDIATE=False, QUEUE_URL=url)
    configure_queue(app)
    if url == "":
        huey.flush()


def _releases(reservation_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "quota.release", AuditEvent.target_type == "quota_reservation",
        AuditEvent.target_id == str(reservation_id))) or 0


def _open_intervals(server_id: int) -> int:
    from cloud_portal.billing.models import UsageInterval
    return db.session.scalar(select(func.count()).select_from(UsageInterval).where(
        UsageInterval.server_id == server_id, UsageInterval.ended_at.is_(None))) or 0


def _delete_now(cloud_app: Any, member: Any, server_id: int) -> None:
    _, job = request_action(member, server_id, "delete")
    db.session.commit()
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    assert perform_action(job.id, ctx, tenant_limit=4, final_attempt=True) == "DELETED"


def test_redis_down_while_a_member_submits(cloud_app: Any, immediate_queue_after: None, own_redis: Any,
                                           make_user: Any, sandbox_cloud: Any, unique_name: Any,
                                           database_url: str, tmp_path: Path) -> None:
    _use_queue(cloud_app, own_redis.url)
    member = make_user("member", "torfaen")
    client = cloud_app.test_client()
    sign_in(client, member.email)
    name = unique_name("noredis")
    own_redis.stop()
    response = client.post("/requests/new/vm", data={"name": name, "catalog_key": "small",
                                                     "image_key": "debian-12", "data_hall": "local-government"})
    # Accepted: the request and its job are recorded; only the queue message could not be sent.
    assert response.status_code == 302, response.get_data(as_text=True)
    request = db.session.scalar(select(m.ServerRequest).where(m.ServerRequest.name == name))
    assert request is not None and request.state == m.APPROVED
    job = db.session.scalar(select(m.Job).where(m.Job.request_id == request.id))
    assert job.state == m.JOB_QUEUED and job.attempts == 0
    assert client.get(response.headers["Location"]).status_code == 200

    own_redis.start()  # empty: the message was never written, and a restarted Redis keeps nothing
    env = _worker_env(cloud_app, sandbox_cloud, database_url)
    with _worker(env, log=tmp_path / "worker.log"):
        time.sleep(2)
        db.session.expire_all()
        assert db.session.get(m.Job, job.id).state == m.JOB_QUEUED  # nothing told the worker yet
        from cloud_portal.jobs.provisioning import reconcile_now
        cloud_app.config["JOB_REQUEUE_AFTER_SECONDS"] = 1
        report = reconcile_now()
        assert job.id in report.requeued_jobs
        report = reconcile_now()  # a second run while the first message waits does no harm
        _wait_for(lambda: db.session.get(m.ServerRequest, request.id).state in ("active", "failed"), 180,
                  "the request to be provisioned")
        reconcile_now()
        time.sleep(3)  # any duplicate message would be claimed by now
    db.session.expire_all()
    assert db.session.get(m.ServerRequest, request.id).state == "active"
    assert db.session.get(m.Job, job.id).attempts == 1  # ran exactly once
    assert db.session.scalar(select(func.count()).select_from(m.Job).where(m.Job.request_id == request.id)) == 1
    assert len(_servers_for_request(sandbox_cloud, request.uid)) == 1
    assert usage_for_tenant(member.tenant_id)["instances"] == 1
    _use_queue(cloud_app, "")
    cloud_app.config.update(QUEUE_IMMEDIATE=True)
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    _delete_now(cloud_app, member, server.id)


def test_postgresql_restarted_while_a_worker_runs_a_job(own_postgres: Any, cloud_app: Any,
                                                        immediate_queue_after: None, make_app: Any,
                                                        cloud_settings: dict[str, Any], sandbox_cloud: Any,
                                                        unique_name: Any, tmp_path: Path) -> None:
    from cloud_portal.db_schema import upgrade_to_head
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import sync_tenants
    from tests.conftest import TENANTS_FILE
    app = make_app(**{**cloud_settings, "DATABASE_URL": own_postgres.url, "QUEUE_IMMEDIATE": False,
                      "QUEUE_URL": "", "INSTANCE_PATH": str(tmp_path / "pg-instance")})
    with app.app_context():
        upgrade_to_head()
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        from cloud_portal.adapters.queue import huey
        huey.flush()
        member = create_user("member", "torfaen")
        request = _submit(member, unique_name("pgrestart"), hall="local-government")
        from cloud_portal.jobs.provisioning import provision_request
        provision_request(request.id)
        env = _worker_env(app, sandbox_cloud, own_postgres.url)
        with _worker(env, log=tmp_path / "worker.log"):
            _wait_for(lambda: db.session.scalar(select(m.JobStep.id).join(m.Job).where(
                m.Job.request_id == request.id, m.JobStep.task == "Boot server", m.JobStep.status == "started")),
                90, "the worker to start booting the server")
            db.session.remove()  # the test's own connection goes with the restart too
            own_postgres.restart()
            _wait_for(lambda: db.session.get(m.ServerRequest, request.id).state in ("active", "failed"), 240,
                      "the job to finish after the restart")
        db.session.expire_all()
        done = db.session.get(m.ServerRequest, request.id)
        assert done.state == "active", (done.state, done.reason, (tmp_path / "worker.log").read_text()[-3000:])
        servers = _servers_for_request(sandbox_cloud, request.uid)
        assert len(servers) == 1, [s.id for s in servers]
        assert usage_for_tenant(member.tenant_id)["instances"] == 1
        server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
        assert server.openstack_id == servers[0].id
        app.config.update(QUEUE_IMMEDIATE=True)
        from cloud_portal.adapters.queue import configure_queue
        configure_queue(app)
        _delete_now(app, member, server.id)
        db.session.remove()


def test_keystone_and_nova_api_down_during_a_delete(cloud_app: Any, make_user: Any, sandbox_cloud: Any,
                                                    unique_name: Any) -> None:
    member = make_user("member", "blaenau-gwent")
    ctx = CloudContext.from_settings(dict(cloud_app.config), cloud_app.instance_path)
    request = _submit(member, unique_name("deldown"))
    assert provision(request.id, ctx, tenant_limit=4, final_attempt=True) == "active"
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    hold = request.reservation_id
    _, job = request_action(member, server.id, "delete")
    db.session.commit()
    discard_pending()  # the test delivers the job itself
    _stop_service("keystone")
    _stop_service("nova-api")
    try:
        with pytest.raises(TransientJobError):
            perform_action(job.id, ctx, tenant_limit=4, final_attempt=False)
        db.session.expire_all()
        assert db.session.get(m.Job, job.id).state == m.JOB_QUEUED  # to be retried, not failed
        assert db.session.get(m.Server, server.id).status != "DELETED"
        assert usage_for_tenant(member.tenant_id)["instances"] == 1  # nothing released yet
    finally:
        start_sandbox()
    assert perform_action(job.id, ctx, tenant_limit=4, final_attempt=True) == "DELETED"
    assert perform_action(job.id, ctx, tenant_limit=4, final_attempt=True) == "succeeded"  # a duplicate delivery: done
    db.session.expire_all()
    assert db.session.get(m.Server, server.id).status == "DELETED"
    assert sandbox_cloud.connect().compute.find_server(server.openstack_id, all_projects=True) is None
    assert usage_for_tenant(member.tenant_id)["instances"] == 0
    assert _releases(hold) == 1
    assert _open_intervals(server.id) == 0


def test_worker_killed_between_playbook_end_and_commit(cloud_app: Any, immediate_queue_after: None,
                                                       make_user: Any, sandbox_cloud: Any, unique_name: Any,
                                                       database_url: str, tmp_path: Path) -> None:
    from cloud_portal.jobs.provisioning import provision_request, reconcile_now
    _use_queue(cloud_app, "")
    cloud_app.config["JOB_LEASE_SECONDS"] = 5
    member = make_user("member", "swansea-university")
    request = _submit(member, unique_name("diecommit"), hall="education")
    provision_request(request.id)
    env = _worker_env(cloud_app, sandbox_cloud, database_url)
    dying = [sys.executable, "-c", _DIE_AFTER_PLAYBOOK]

    def run_killed_then_recover(job_id: str, done: Any, what: str) -> None:
        with _worker(env, dying, log=tmp_path / "dying.log") as first:
            first.wait(timeout=180)  # it kills itself once the playbook has succeeded
            assert first.returncode == -signal.SIGKILL, (tmp_path / "dying.log").read_text()[-3000:]
        db.session.expire_all()
        assert db.session.get(m.Job, job_id).state == m.JOB_RUNNING  # the cloud did it; the database never heard
        db.session.execute(update(m.Job).where(m.Job.id == job_id).values(deadline_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        with _worker(env, log=tmp_path / "worker.log"):
            report = reconcile_now()
            assert job_id in report.resumed_jobs, (report.resumed_jobs, report.updated)
            _wait_for(done, 180, what)

    job = db.session.scalar(select(m.Job).where(m.Job.request_id == request.id))
    assert len(_servers_for_request(sandbox_cloud, request.uid)) == 0
    run_killed_then_recover(job.id, lambda: db.session.get(m.ServerRequest, request.id).state != "provisioning",
                            "the resumed provision job")
    assert db.session.get(m.ServerRequest, request.id).state == "active"
    servers = _servers_for_request(sandbox_cloud, request.uid)
    assert len(servers) == 1, [s.id for s in servers]  # the resumed playbook found it, made no second
    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
    assert server.openstack_id == servers[0].id
    assert usage_for_tenant(member.tenant_id)["instances"] == 1
    hold = db.session.get(m.ServerRequest, request.id).reservation_id

    _, delete_job = request_action(member, server.id, "delete")
    commit()  # as the page does: commit, then enqueue
    run_killed_then_recover(delete_job.id, lambda: db.session.get(m.Server, server.id).status == "DELETED",
                            "the resumed delete job")
    assert sandbox_cloud.connect().compute.find_server(server.openstack_id, all_projects=True) is None
    assert usage_for_tenant(member.tenant_id)["instances"] == 0
    assert _releases(hold) == 1
    assert _open_intervals(server.id) == 0
    assert db.session.get(m.Job, delete_job.id).state == m.JOB_SUCCEEDED

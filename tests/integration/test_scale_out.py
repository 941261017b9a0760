"""The scale-out layout as a whole: two gunicorn nodes and two workers, each with its own instance
folder (as on separate machines), sharing one PostgreSQL database and one Redis queue (the
tests' own, on their own ports), against the sandbox cloud.

Twenty orders spread over both web nodes are each provisioned exactly once and reach ACTIVE
while one worker is killed mid-run (the other finishes its jobs once their leases run out), and
reconciliation started on both workers at the same moment is done once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.audit.models import AuditEvent
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.quotas.service import usage_for_tenant
from tests.conftest import TENANTS_FILE
from tests.helpers import create_user, free_port, gunicorn_command, wait_for_healthz
from tests.integration.test_faults import _wait_for, _worker
from tests.integration.test_recovery import _servers_for_request

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "cloud_portal.cli"]
ORDERS = 20


def _env(instance: Path, shared: dict[str, str]) -> dict[str, str]:
    instance.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **shared, "CLOUD_PORTAL_INSTANCE_PATH": str(instance)}


def _post(base: str, path: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - http to loopback
        base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - http to loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _runs(instance: Path) -> set[str]:
    """Job ids a worker has started a playbook for (ansible-runner's folders are <job>-<attempt>)."""
    runs = instance / "runs"
    return {p.name.rsplit("-", 1)[0] for p in runs.iterdir()} if runs.exists() else set()


def test_two_web_nodes_and_two_workers_share_one_database_and_queue(
        cloud_app: Any, immediate_queue_after: None, own_postgres: Any, own_redis: Any, make_app: Any,
        sandbox_cloud: Any, unique_name: Any, tmp_path: Path) -> None:
    shared = {"CLOUD_PORTAL_DATABASE_URL": own_postgres.url, "CLOUD_PORTAL_QUEUE_URL": own_redis.url,
              "CLOUD_PORTAL_CLOUDS_YAML": str(sandbox_cloud.clouds_yaml), "CLOUD_PORTAL_TENANTS_FILE": str(TENANTS_FILE),
              "CLOUD_PORTAL_SECRET_KEY": "scale-out-" + "s" * 40, "CLOUD_PORTAL_JOB_LEASE_SECONDS": "6",
              "CLOUD_PORTAL_RECONCILE_INTERVAL_MINUTES": "1", "CLOUD_PORTAL_JOB_REQUEUE_AFTER_SECONDS": "30",
              "CLOUD_PORTAL_QUEUE_IMMEDIATE": "false", "CLOUD_PORTAL_LOG_LEVEL": "INFO"}
    web_dirs = [tmp_path / "web-a", tmp_path / "web-b"]
    worker_dirs = [tmp_path / "worker-a", tmp_path / "worker-b"]
    # The operator's first steps, once, from one machine: schema and tenants (in the cloud too).
    for args in (["init"], ["tenants", "sync"]):
        done = subprocess.run(CLI + args, env=_env(web_dirs[0], shared), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    # The test reads the shared database through its own app (it runs no jobs).
    app = make_app(DATABASE_URL=own_postgres.url, QUEUE_URL=own_redis.url, QUEUE_IMMEDIATE=False,
                   INSTANCE_PATH=str(tmp_path / "test-instance"))
    with app.app_context():
        members = [create_user("member", "torfaen", email=f"scale.{i}.{unique_name('m')}@torfaen.gov.uk")
                   for i in range(4)]
        tokens = [create_api_token(None, member, "scale-out") for member in members]
        db.session.commit()
        torfaen_id = members[0].tenant_id

        webs, bases = [], []
        for folder in web_dirs:
            port = free_port()
            log = (tmp_path / f"{folder.name}.log").open("w")
            webs.append(subprocess.Popen(
                gunicorn_command(port),
                env=_env(folder, shared), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            bases.append(f"http://127.0.0.1:{port}")
        try:
            for base, web in zip(bases, webs, strict=True):
                wait_for_healthz(base, web)
            with _worker(_env(worker_dirs[0], shared), log=tmp_path / "worker-a.log") as worker_a, \
                    _worker(_env(worker_dirs[1], shared), log=tmp_path / "worker-b.log"):
                # Twenty orders, alternating between the web nodes, from four people at once.
                answers: list[tuple[int, dict[str, Any], str]] = []

                def order(person: int) -> None:
                    for n in range(ORDERS // len(members)):
                        base = bases[(person + n) % 2]
                        status, body = _post(base, "/api/v1/requests", tokens[person], {
                            "kind": "vm", "size": "small", "image": "debian-12", "data_hall": "local-government",
                            "name": unique_name(f"so{person}{n}")})
                        answers.append((status, body, base))

                threads = [threading.Thread(target=order, args=(i,)) for i in range(len(members))]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert [a[0] for a in answers] == [201] * ORDERS, [a[1] for a in answers if a[0] != 201]
                assert Counter(a[2] for a in answers) == Counter({bases[0]: ORDERS // 2, bases[1]: ORDERS // 2})
                request_ids = [a[1]["id"] for a in answers]

                # Kill worker A (SIGKILL: no clean-up of any kind) while it runs a job.
                def a_is_mid_job() -> bool:
                    running = set(db.session.scalars(select(m.Job.id).where(m.Job.state == m.JOB_RUNNING)))
                    return bool(running & _runs(worker_dirs[0]))
                _wait_for(a_is_mid_job, 120, "worker A to be running a playbook")
                taken_over = set(db.session.scalars(select(m.Job.id).where(m.Job.state == m.JOB_RUNNING))) \
                    & _runs(worker_dirs[0])
                os.killpg(worker_a.pid, signal.SIGKILL)
                worker_a.wait()

                def all_settled() -> bool:
                    states = db.session.scalars(select(m.ServerRequest.state).where(
                        m.ServerRequest.id.in_(request_ids)))
                    return all(state in ("active", "failed") for state in states)
                _wait_for(all_settled, 420, "all twenty requests to settle with one worker left")
                requests = list(db.session.scalars(select(m.ServerRequest).where(m.ServerRequest.id.in_(request_ids))))
                assert {r.state for r in requests} == {"active"}, \
                    [(r.name, r.state, r.reason) for r in requests if r.state != "active"]

                # Exactly once: one Nova server per request, one portal server, quota held once each.
                for request in requests:
                    in_nova = _servers_for_request(sandbox_cloud, request.uid)
                    assert len(in_nova) == 1, (request.name, [s.id for s in in_nova])
                    assert in_nova[0].status == "ACTIVE"
                    server = db.session.scalar(select(m.Server).where(m.Server.request_id == request.id))
                    assert server is not None and server.openstack_id == in_nova[0].id
                assert usage_for_tenant(torfaen_id)["instances"] == ORDERS
                jobs = list(db.session.scalars(select(m.Job).where(m.Job.request_id.in_(request_ids))))
                assert sorted(j.request_id for j in jobs) == sorted(request_ids)  # one job per order
                # The killed worker's jobs were finished by the other one after their leases ran out.
                finished_again = {j.id: j.attempts for j in jobs if j.id in taken_over}
                assert finished_again and all(a >= 2 for a in finished_again.values()), finished_again
                assert all(j.id in _runs(worker_dirs[1]) for j in jobs if j.id in taken_over)

            # Reconciliation started on both workers' machines at the same moment (their periodic
            # runs stopped with them): one does it, the other says so; a server deleted outside
            # the portal is noticed once and its quota released once.
            gone = db.session.scalar(select(m.Server).where(m.Server.request_id == request_ids[0]))
            sandbox_cloud.connect().compute.delete_server(gone.openstack_id)
            gone_uid = next(r.uid for r in requests if r.id == gone.request_id)
            _wait_for(lambda: not _servers_for_request(sandbox_cloud, gone_uid), 120, "Nova to delete the server")
            runs_before = db.session.scalar(select(func.count()).select_from(m.ReconcileRun))
            both = [subprocess.Popen(CLI + ["reconcile"], env=_env(folder, shared), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for folder in worker_dirs]
            outputs = [p.communicate(timeout=300)[0] for p in both]
            assert all(p.returncode == 0 for p in both), outputs
            assert sum("skipped: another worker" in out for out in outputs) == 1, outputs
            db.session.expire_all()
            assert db.session.scalar(select(func.count()).select_from(m.ReconcileRun)) == runs_before + 1
            assert db.session.get(m.Server, gone.id).status == m.SERVER_DELETED
            releases = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "quota.release", AuditEvent.target_id == str(gone.reservation_id)))
            assert releases == 1
            assert usage_for_tenant(torfaen_id)["instances"] == ORDERS - 1
        finally:
            for web in webs:
                os.killpg(web.pid, signal.SIGTERM)
            for web in webs:
                web.wait(timeout=30)
            # Leave the sandbox as we found it.
            tags = {f"request-{uid}" for uid in db.session.scalars(select(m.ServerRequest.uid))}
            conn = sandbox_cloud.connect()
            ours = [s for s in conn.compute.servers(details=True, all_projects=True)
                    if (s.metadata or {}).get("portal_request_id") in tags]
            for server in ours:
                conn.compute.delete_server(server.id, ignore_missing=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(
                    conn.compute.find_server(s.id, all_projects=True) for s in ours):
                time.sleep(2)

"""/healthz and /metrics, with the queue on SQLite and on a real Redis, and a real worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("CLOUD_PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_healthz_ok_with_sqlite_queue(make_app: Any, tmp_path: Path) -> None:
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="")
    body = app.test_client().get("/healthz").get_json()
    # Open to anyone, so it says up or down per part and nothing else.
    assert body == {"status": "ok", "database": "up", "queue": "up"}
    assert 'portal_queue_backend{backend="SqliteStorage"} 1.0' in app.test_client().get("/metrics").text
    assert (tmp_path / "instance" / "queue.db").exists()


def test_healthz_ok_with_redis_queue(make_app: Any) -> None:
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL=REDIS_URL)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.get_json()
    assert 'portal_queue_backend{backend="RedisStorage"} 1.0' in app.test_client().get("/metrics").text


def test_healthz_503_when_queue_is_down(make_app: Any) -> None:
    # Nothing listens on port 1 of loopback: the queue check must fail, not hang or raise.
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "failing", "database": "up", "queue": "down"}
    assert "Connection" not in response.text  # the error goes to the log, not to anyone asking


def test_healthz_503_when_database_is_down(make_app: Any, tmp_path: Path) -> None:
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path}/missing-dir/x/portal.db")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.get_json()["database"] == "down"


def test_metrics(client: Any, make_user: Any) -> None:
    make_user("member")
    client.get("/sign-in")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'portal_users{role="member"} 1.0' in text
    assert "portal_tenants 6.0" in text
    assert 'portal_http_requests_total{endpoint="auth.sign_in",status="200"}' in text
    assert 'portal_dependency_up{dependency="database"} 1.0' in text


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_worker_consumes_jobs(make_app: Any, tmp_path: Path, database_url: str, backend: str) -> None:
    """A real `cloud-portal worker` process picks up a queued job and leaves its heartbeat."""
    from cloud_portal.adapters.queue import huey
    from cloud_portal.jobs.tasks import worker_heartbeat

    queue_url = "" if backend == "sqlite" else REDIS_URL
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL=queue_url)
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
           "CLOUD_PORTAL_DATABASE_URL": database_url, "CLOUD_PORTAL_QUEUE_URL": queue_url,
           "CLOUD_PORTAL_SECRET_KEY": "w" * 40}
    with app.app_context():
        huey.delete("worker-heartbeat")
        huey.flush()
        worker_heartbeat()  # enqueued, not run: the queue is not immediate
        assert huey.pending_count() >= 1
    proc = subprocess.Popen([sys.executable, "-m", "cloud_portal.cli", "worker", "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        with app.app_context():
            while time.monotonic() < deadline and huey.get("worker-heartbeat", peek=True) is None:
                time.sleep(0.2)
            metrics_text = app.test_client().get("/metrics").text
        assert "portal_worker_heartbeat_timestamp_seconds" in metrics_text, "the worker did not run the job"
        heartbeat = float(next(line.split()[1] for line in metrics_text.splitlines()
                                if line.startswith("portal_worker_heartbeat_timestamp_seconds ")))
        assert abs(heartbeat - time.time()) < 120
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_metrics_need_a_token_or_an_allowed_address(make_app: Any) -> None:
    app = make_app(METRICS_TOKEN="scrape-" + "t" * 24, METRICS_ALLOWED_ADDRESSES="10.1.0.0/16")
    client = app.test_client()
    outside = {"REMOTE_ADDR": "192.0.2.7"}
    refused = client.get("/metrics", environ_base=outside)
    assert refused.status_code == 401 and "portal_users" not in refused.text
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", environ_base=outside,
                      headers={"Authorization": "Bearer scrape-" + "t" * 24}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.44.2"}).status_code == 200
    # No token configured: an empty bearer is not a match.
    app = make_app(METRICS_TOKEN="", METRICS_ALLOWED_ADDRESSES="")
    assert app.test_client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert app.test_client().get("/healthz").status_code == 200  # always open


def test_gunicorn_workers_freeze_what_they_loaded() -> None:
    """The worker hook moves the loaded app out of the collector's reach (so a full collection
    does not walk it while a request waits), and leaves collection itself switched on."""
    import gc

    from cloud_portal import serving
    assert gc.get_freeze_count() == 0
    try:
        serving.post_worker_init(None)
        assert gc.get_freeze_count() > 10_000
        assert gc.isenabled()
    finally:
        gc.unfreeze()

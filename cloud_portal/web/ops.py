"""Operations endpoints: /healthz for load balancers and containers, /metrics for Prometheus."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from datetime import datetime

from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cloud_portal import health
from cloud_portal.extensions import csrf

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)
csrf.exempt(bp)

# Our own registry, so tests that build many apps in one process don't collide on names.
REGISTRY = CollectorRegistry()
REQUESTS = Counter("portal_http_requests_total", "HTTP responses by endpoint and status",
                   ["endpoint", "status"], registry=REGISTRY)
LATENCY = Histogram("portal_http_request_seconds", "Time to produce a response", ["endpoint"],
                    registry=REGISTRY)
USERS = Gauge("portal_users", "Active accounts by role", ["role"], registry=REGISTRY)
TENANTS = Gauge("portal_tenants", "Active member tenants", registry=REGISTRY)
QUEUE_PENDING = Gauge("portal_queue_pending", "Jobs waiting in the queue", registry=REGISTRY)
UP = Gauge("portal_dependency_up", "1 when a dependency answered the last check", ["dependency"],
           registry=REGISTRY)
QUEUE_BACKEND = Gauge("portal_queue_backend", "The queue storage in use (1)", ["backend"], registry=REGISTRY)
HEARTBEAT = Gauge("portal_worker_heartbeat_timestamp_seconds", "When a worker last ran its heartbeat job",
                  registry=REGISTRY)


def count_request(status: int) -> None:
    endpoint = request.endpoint or "unknown"
    REQUESTS.labels(endpoint, str(status)).inc()
    started = g.get("request_started")
    if started is not None:
        LATENCY.labels(endpoint).observe(time.perf_counter() - started)


@bp.route("/healthz")
def healthz():
    """Up or down per part, nothing more (it is open to anyone who can reach the portal); the
    details (errors, queue backend, worker heartbeat) are in /metrics and the logs."""
    db_ok, db_error = health.database_status()
    queue = health.queue_status()
    if db_error or not queue["ok"]:
        log.warning("health check failing: database %s, queue %s", db_error or "up", queue.get("error") or "up")
    body = {"status": "ok" if db_ok and queue["ok"] else "failing",
            "database": "up" if db_ok else "down", "queue": "up" if queue["ok"] else "down"}
    return jsonify(body), 200 if body["status"] == "ok" else 503


def _may_read_metrics() -> bool:
    """A bearer token equal to METRICS_TOKEN, or a client address in METRICS_ALLOWED_ADDRESSES."""
    expected = str(current_app.config.get("METRICS_TOKEN") or "")
    given = request.headers.get("Authorization", "")
    if expected and given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), expected):
        return True
    try:
        client = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    for allowed in str(current_app.config.get("METRICS_ALLOWED_ADDRESSES") or "").split(","):
        if allowed.strip() and client in ipaddress.ip_network(allowed.strip(), strict=False):
            return True
    return False


@bp.route("/metrics")
def metrics():
    if not _may_read_metrics():
        response = jsonify({"error": "not_permitted", "message": "Send 'Authorization: Bearer <METRICS_TOKEN>' "
                            "or scrape from an address in METRICS_ALLOWED_ADDRESSES."})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    db_ok, _ = health.database_status()
    UP.labels("database").set(1 if db_ok else 0)
    if db_ok:
        counts = health.active_users_by_role()
        for role in ("member", "tenant_admin", "platform_admin", "finance"):
            USERS.labels(role).set(counts.get(role, 0))
        TENANTS.set(health.active_member_tenants())
    queue = health.queue_status()
    UP.labels("queue").set(1 if queue["ok"] else 0)
    if queue["ok"]:
        QUEUE_PENDING.set(queue["pending"])
        QUEUE_BACKEND.labels(queue["backend"]).set(1)
        if queue.get("worker_heartbeat") is not None:
            HEARTBEAT.set(datetime.fromisoformat(str(queue["worker_heartbeat"])).timestamp())
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

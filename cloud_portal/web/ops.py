"""Operations endpoints: /healthz for load balancers and containers, /metrics for Prometheus."""
from __future__ import annotations

import time

from flask import Blueprint, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cloud_portal import health
from cloud_portal.extensions import csrf

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


def count_request(status: int) -> None:
    endpoint = request.endpoint or "unknown"
    REQUESTS.labels(endpoint, str(status)).inc()
    started = g.get("request_started")
    if started is not None:
        LATENCY.labels(endpoint).observe(time.perf_counter() - started)


@bp.route("/healthz")
def healthz():
    db_ok, db_error = health.database_status()
    queue = health.queue_status()
    body = {"status": "ok" if db_ok and queue["ok"] else "failing",
            "database": {"ok": db_ok, **({"error": db_error} if db_error else {})},
            "queue": queue}
    return jsonify(body), 200 if body["status"] == "ok" else 503


@bp.route("/metrics")
def metrics():
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
    return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

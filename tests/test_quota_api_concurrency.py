"""50 concurrent API orders against a tenant with room for exactly 10: exactly 10 accepted (201),
40 refused (409, with the quota message). Runs on SQLite and on PostgreSQL (see conftest)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.quotas import service as quotas
from cloud_portal.quotas.models import RESERVATION_OPEN, QuotaReservation
from cloud_portal.tenants.service import get_tenant_by_slug
from tests.helpers import create_user

ATTEMPTS, ROOM = 50, 10


def test_fifty_concurrent_api_requests_room_for_ten(make_app: Callable[..., Any]) -> None:
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="")  # a real SQLite queue nothing consumes
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        admin = create_user("platform_admin", "platform", email="admin@cwmwl.example")
        torfaen = get_tenant_by_slug("torfaen")
        limits = quotas.limits_for_tenant(torfaen.id)
        # Room for exactly ROOM servers; per-person limits out of the way (each thread is its own person).
        quotas.set_limits(admin, torfaen, {**limits.tenant, "instances": ROOM}, dict.fromkeys(limits.per_user))
        tokens = []
        for i in range(ATTEMPTS):
            user = create_user("member", "torfaen", email=f"m{i}@torfaen.example")
            tokens.append(create_api_token(None, user, "load"))
        db.session.commit()
        tenant_id = torfaen.id
        db.session.remove()

    barrier = threading.Barrier(ATTEMPTS)
    results: list[tuple[int, dict[str, Any]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    payload = {"kind": "vm", "size": "small", "image": "debian-12", "data_hall": "local-government"}

    def order(i: int) -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=60)
            response = client.post("/api/v1/requests", json={**payload, "name": f"load-{i}"},
                                   headers={"Authorization": f"Bearer {tokens[i]}"})
            with lock:
                results.append((response.status_code, response.get_json()))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=order, args=(i,)) for i in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)

    assert not errors, errors
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == ROOM and statuses.count(409) == ATTEMPTS - ROOM, statuses
    for status, body in results:
        if status == 409:
            assert body["code"] == "quota_exceeded"
            assert "Torfaen County Borough Council has 0 of 10 instances left; this request needs 1." in body["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(m.ServerRequest)) == ROOM
        assert db.session.scalar(select(func.count()).select_from(QuotaReservation).where(
            QuotaReservation.tenant_id == tenant_id, QuotaReservation.state == RESERVATION_OPEN)) == ROOM
        assert quotas.usage_for_tenant(tenant_id)["instances"] == ROOM
        db.session.remove()

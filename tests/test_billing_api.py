"""The billing API's scopes and answers: members their own, tenant admins their tenant, finance all."""
from __future__ import annotations

from typing import Any

from cloud_portal.accounts.service import create_api_token
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.timeutil import frozen_at
from tests.helpers import server_seen_active, utc


def _headers(user: Any) -> dict[str, str]:
    token = create_api_token(None, user, "billing")
    db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def test_billing_api_scopes(app: Any, make_user: Any) -> None:
    alys, bryn = make_user("member", "torfaen"), make_user("member", "torfaen")
    admin, outsider = make_user("tenant_admin", "torfaen"), make_user("tenant_admin", "nhs-wales")
    finance = make_user("finance", "platform")
    server_seen_active(alys, "web", utc("2026-11-01T00:00:00"))
    client = app.test_client()
    with frozen_at(utc("2026-12-01T00:00:05")):
        mine = client.get("/api/v1/billing/months/2026-11/statement", headers=_headers(alys)).get_json()
        # A small VM all November: 720 × 0.015 = 10.80; 1,440 × 0.005 = 7.20; 20 GB-months × 0.04 = 0.80
        assert mine["user"] == alys.email and mine["total_gbp"] == "18.80" and not mine["closed"]
        assert client.get(f"/api/v1/billing/months/2026-11/statement?user={alys.email}",
                          headers=_headers(bryn)).status_code == 404
        assert client.get(f"/api/v1/billing/months/2026-11/statement?user={alys.email}",
                          headers=_headers(admin)).get_json()["total_gbp"] == "18.80"
        assert client.get(f"/api/v1/billing/months/2026-11/statement?user={alys.email}",
                          headers=_headers(outsider)).status_code == 404
        assert client.get("/api/v1/billing/months/2026-11/tenants", headers=_headers(alys)).status_code == 403
        own = client.get("/api/v1/billing/months/2026-11/tenants", headers=_headers(admin)).get_json()
        assert own["items"] == [{"tenant": "torfaen", "cost_centre": alys.tenant.cost_centre, "total_gbp": "18.80"}]
        every = client.get("/api/v1/billing/months/2026-11/tenants", headers=_headers(finance)).get_json()
        assert len(every["items"]) > 1 and {"tenant": "torfaen", "cost_centre": alys.tenant.cost_centre,
                                            "total_gbp": "18.80"} in every["items"]
        bad = client.get("/api/v1/billing/months/november/tenants", headers=_headers(finance))
        assert bad.status_code == 400 and "YYYY-MM" in bad.get_json()["error"]
        assert client.post("/api/v1/billing/months/2026-11/close", headers=_headers(admin)).status_code == 403
        refused = client.post("/api/v1/billing/months/2026-11/close", headers=_headers(finance))
        assert refused.status_code == 400 and "reconciliation" in refused.get_json()["error"]
        db.session.add(m.ReconcileRun())
        db.session.commit()
        closed = client.post("/api/v1/billing/months/2026-11/close", headers=_headers(finance)).get_json()
        assert closed["total_gbp"] == "18.80" and not closed["already_closed"]
        months = client.get("/api/v1/billing/months", headers=_headers(alys)).get_json()["items"]
        assert months[0]["month"] == "2026-12" and months[1] == {**months[1], "month": "2026-11", "closed": True}
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/billing/months/{month}/statement" in doc["paths"]

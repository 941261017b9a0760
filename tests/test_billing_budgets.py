"""Budgets: e-mails at 80 % and 100 % of the month-end forecast (once each), and orders that wait
for approval once a require_approval tenant's forecast is over budget."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_portal.billing import budgets
from cloud_portal.errors import InvalidConfig
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning import requests as orders
from cloud_portal.tenants.config_file import load_tenants_file
from cloud_portal.tenants.service import sync_tenants
from cloud_portal.timeutil import frozen_at
from cloud_portal.unit_of_work import discard_pending
from tests.conftest import TENANTS_FILE
from tests.helpers import create_user, server_seen_active, utc
from tests.test_quota_increases import Inbox, smtp  # noqa: F401  (the local SMTP server fixture)


def _tenants_file(tmp_path: Path, budget: dict[str, Any]) -> Path:
    doc = yaml.safe_load(TENANTS_FILE.read_text())
    torfaen = next(t for t in doc["tenants"] if t["slug"] == "torfaen")
    torfaen["budget"] = budget
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_budget_is_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match=r"tenants\[0\]\.budget\.over_budget"):
        load_tenants_file(_tenants_file(tmp_path, {"monthly": "30.00", "over_budget": "shout"}))


@pytest.fixture
def budget_app(make_app: Callable[..., Any], smtp: tuple[Inbox, int], tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_FROM="portal@cwmwl.example")
    with app.app_context():
        # £30 a month; a small VM forecasts £18.80 for a whole month (720 × 0.015 + 1,440 × 0.005 + 20 × 0.04).
        sync_tenants(load_tenants_file(_tenants_file(tmp_path, {"monthly": "30.00",
                                                                 "over_budget": "require_approval"})))
        db.session.commit()
        yield app


def test_alerts_once_at_80_and_100_per_cent(budget_app: Any, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox = smtp[0]
    admin = create_user("tenant_admin", "torfaen", email="budget-admin@torfaen.example")
    member = create_user("member", "torfaen")
    with frozen_at(utc("2026-11-02T00:00:00")):
        server_seen_active(member, "one", utc("2026-11-01T00:00:00"))
        assert budgets.forecast(member.tenant_id) == Decimal("18.80")  # 62.7 %: nothing yet
        assert budgets.send_budget_alerts() == []
    with frozen_at(utc("2026-11-16T00:00:00")):
        server_seen_active(member, "two", utc("2026-11-16T00:00:00"))
        # one all month (18.80) + two from the 16th, 15 of 30 days (5.40 + 3.60 + 0.40 = 9.40) = 28.20: 94 %
        assert budgets.forecast(member.tenant_id) == Decimal("28.20")
        assert budgets.send_budget_alerts() == [("torfaen", 80)]
        assert budgets.send_budget_alerts() == []  # once only
        assert not budgets.over_budget_needs_approval(member.tenant)
    with frozen_at(utc("2026-11-16T00:00:00")):
        server_seen_active(member, "three", utc("2026-11-16T00:00:00"))  # forecast 28.20 < 30: still approved at once
        assert budgets.send_budget_alerts() == [("torfaen", 100)]  # 37.60: 125 %
        assert budgets.over_budget_needs_approval(member.tenant)
        request = orders.submit_request(member, kind="vm", catalog_key="small", image_key="debian-12",
                                        data_hall="local-government", name="four")
        db.session.commit()
        discard_pending()
        assert request.state == m.PENDING_APPROVAL
    messages = inbox.wait(2)
    assert [msg["To"] for msg in messages] == [admin.email, admin.email]
    assert "80% of 2026-11" in messages[0]["Subject"] and "£28.20" in messages[0].get_payload(decode=True).decode()
    assert "wait for an administrator's approval" in messages[1].get_payload(decode=True).decode()

"""API tokens that end: an expiry (with a warning e-mail a week before), a read-only scope, and
revocation on password reset and on disabling the account, audit-logged."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cloud_portal.accounts import service as accounts
from cloud_portal.accounts.models import ApiToken
from cloud_portal.audit.models import AuditEvent
from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.tenants.config_file import load_tenants_file
from cloud_portal.tenants.service import sync_tenants
from cloud_portal.timeutil import frozen_at
from tests.conftest import TENANTS_FILE
from tests.helpers import create_user, signed_in_client, utc
from tests.test_quota_increases import Inbox, smtp  # noqa: F401  (the local SMTP server fixture)

NOW = utc("2027-02-01T09:00:00")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_expires_and_says_so(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    with frozen_at(NOW):
        token = accounts.create_api_token(member, member, "nightly", days=30)
        db.session.commit()
        row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == member.id))
        assert row.expires_at == NOW + timedelta(days=30) and row.scope == "full"
    client = app.test_client()
    with frozen_at(NOW + timedelta(days=29, hours=23)):
        assert client.get("/api/v1/servers", headers=_bearer(token)).status_code == 200
    with frozen_at(NOW + timedelta(days=30)):
        expired = client.get("/api/v1/servers", headers=_bearer(token))
        assert expired.status_code == 401 and expired.get_json()["code"] == "token_expired"
        assert "expired on 2027-03-03" in expired.get_json()["error"]
    with pytest.raises(InvalidInput, match="1 to 365 days"):
        accounts.create_api_token(member, member, "forever", days=400)
    with pytest.raises(InvalidInput, match="not a token scope"):
        accounts.create_api_token(member, member, "odd", scope="admin")


def test_a_read_token_reads_and_changes_nothing(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    token = accounts.create_api_token(member, member, "dashboard", scope="read")
    db.session.commit()
    client = app.test_client()
    assert client.get("/api/v1/servers", headers=_bearer(token)).status_code == 200
    for method, path, body in (("POST", "/api/v1/requests", {"kind": "vm", "catalog_key": "small",
                                                            "image_key": "debian-12", "data_hall": "local-government",
                                                            "name": "from-a-read-token"}),
                               ("POST", "/api/v1/quota-increases", {"vcpus": 4, "reason": "more"}),
                               ("POST", "/api/v1/servers/1/actions", {"action": "stop"})):
        refused = client.open(path, method=method, json=body, headers=_bearer(token))
        assert refused.status_code == 403 and refused.get_json()["code"] == "read_only_token", path
    from cloud_portal.provisioning import models as m
    assert db.session.scalar(select(m.ServerRequest).where(m.ServerRequest.name == "from-a-read-token")) is None


def test_password_reset_and_disabling_revoke_every_token_for_good(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    admin = make_user("tenant_admin", "torfaen")
    first = accounts.create_api_token(member, member, "one")
    second = accounts.create_api_token(member, member, "two")
    db.session.commit()
    client = app.test_client()
    accounts.reset_password(admin, member)
    db.session.commit()
    for token in (first, second):
        assert client.get("/api/v1/servers", headers=_bearer(token)).status_code == 401
    third = accounts.create_api_token(member, member, "three")
    db.session.commit()
    accounts.set_active(admin, member, False)
    db.session.commit()
    accounts.set_active(admin, member, True)  # re-enabling does not bring tokens back
    db.session.commit()
    assert client.get("/api/v1/servers", headers=_bearer(third)).status_code == 401
    revocations = [(e.after or {}).get("reason") for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "token.revoke", AuditEvent.target_id == member.email)
        .order_by(AuditEvent.id))]
    assert revocations == ["password reset", "password reset", "account disabled"]


def test_the_token_page_makes_a_read_token_and_revokes_with_an_audit_entry(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    page = signed_in_client(app, member.email)
    made = page.post("/account/tokens", data={"name": "grafana", "scope": "read", "days": "7"})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    text = made.get_data(as_text=True)
    token = text.split("Your new token is ")[1].split(" ")[0]
    assert "only read" in text and accounts.user_for_api_token(token) == member
    assert page.post("/account/tokens", data={"name": "x", "scope": "read", "days": "0"}).status_code == 200
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "grafana"))
    page.post("/account/tokens", data={"revoke": row.id})
    db.session.refresh(row)
    assert row.revoked_at is not None
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "token.revoke")).after["reason"] == \
        "revoked by its owner"


@pytest.fixture
def mail_app(make_app: Callable[..., Any], smtp: tuple[Inbox, int]) -> Iterator[Any]:  # noqa: F811
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_FROM="portal@cwmwl.example")
    with app.app_context():
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        yield app


def test_owners_are_warned_once_a_week_before_expiry(mail_app: Any, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    member = create_user("member", "torfaen", email="token-owner@torfaen.example")
    with frozen_at(NOW):
        accounts.create_api_token(member, member, "backup-script", days=30)
        accounts.create_api_token(member, member, "long-lived", days=90)
        db.session.commit()
    settings = dict(mail_app.config)
    with frozen_at(NOW + timedelta(days=22)):  # 8 days left: not yet
        assert accounts.warn_expiring_tokens(settings) == 0
    with frozen_at(NOW + timedelta(days=23, hours=1)):  # under 7 days left
        assert accounts.warn_expiring_tokens(settings) == 1
        assert accounts.warn_expiring_tokens(settings) == 0  # once only
    messages = smtp[0].wait(1)
    assert len(messages) == 1 and messages[0]["To"] == member.email
    assert "backup-script" in messages[0]["Subject"] and "2027-03-03" in messages[0]["Subject"]


def test_last_use_is_saved_at_most_once_a_minute_outside_the_read(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    token = accounts.create_api_token(member, member, "reader", scope="read")
    db.session.commit()
    client = app.test_client()
    with frozen_at(NOW):
        assert client.get("/api/v1/servers", headers=_bearer(token)).status_code == 200
    db.session.expire_all()
    row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == member.id))
    assert row.last_used_at == NOW  # saved, though the read itself committed nothing
    updates: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)
    from sqlalchemy import event
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        with frozen_at(NOW + timedelta(seconds=30)):
            assert client.get("/api/v1/servers", headers=_bearer(token)).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert updates == []  # within the minute: no write at all
    with frozen_at(NOW + timedelta(minutes=2)):
        client.get("/api/v1/servers", headers=_bearer(token))
    db.session.expire_all()
    assert db.session.scalar(select(ApiToken.last_used_at).where(ApiToken.id == row.id)) == NOW + timedelta(minutes=2)


def test_the_request_list_costs_the_same_statements_for_2_or_12_requests(app: Any, make_user: Any,
                                                                          count_queries: Any) -> None:
    """No query per row (the server of each request was loaded one by one)."""
    from tests.helpers import server_seen_active
    admin = make_user("tenant_admin", "torfaen")
    people = [make_user("member", "torfaen") for _ in range(3)]  # per-person limits: six servers each
    token = accounts.create_api_token(admin, admin, "lister")
    db.session.commit()
    client = app.test_client()

    def statements() -> int:
        with count_queries() as counter:
            listing = client.get("/api/v1/requests?scope=tenant", headers=_bearer(token))
        assert listing.status_code == 200
        return int(counter.count)

    for n in range(2):
        server_seen_active(people[0], f"few-{n}", utc("2026-11-02T09:00:00"))
    statements()  # the first call of the minute also notes the token's use
    few = statements()
    for n in range(10):
        server_seen_active(people[1 + n % 2], f"many-{n}", utc("2026-11-02T09:00:00"))
    assert len(client.get("/api/v1/requests?scope=tenant", headers=_bearer(token)).get_json()["items"]) == 12
    assert statements() == few

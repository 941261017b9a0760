"""Closed statement lines are final: no page, API call or CLI command changes them.

Every state-changing route of the app (found in its URL map, so a route added later is covered
or must be listed here with a reason) is called by a person of each role, web and API, with
bodies hypothesis makes up; after each call the closed month's lines and its month row must be
exactly as they were."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud_portal.accounts.service import create_api_token
from cloud_portal.billing import months
from cloud_portal.billing.models import BillingMonth, StatementLine
from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.timeutil import frozen_at
from tests.helpers import rule_paths, server_seen_active, signed_in_client, utc

MONTH = "2026-11"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
#: Routes not called, with the reason (none today).
NOT_CALLED: dict[str, str] = {}
FIELDS = ["month", "amount", "quantity", "rate", "role", "name", "email", "password", "reason", "size",
          "image", "hall", "tenant", "confirm", "lang", "next", "display_name", "vcpus", "count", "note"]
values = st.one_of(st.just(MONTH), st.just("2026-12"), st.text(max_size=12), st.integers(-5, 10**6).map(str),
                   st.just("0.00"), st.just("-100.00"))
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)


def _snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    db.session.expire_all()
    lines = [tuple(getattr(r, c.key) for c in StatementLine.__table__.columns)
             for r in db.session.scalars(select(StatementLine).order_by(StatementLine.id))]
    month = [(r.month, r.closed_at, r.closed_by) for r in db.session.scalars(select(BillingMonth))]
    return lines, month


@pytest.fixture
def closed_month(app: Any, make_user: Any) -> dict[str, Any]:
    people = {"member": make_user("member", "torfaen"), "tenant_admin": make_user("tenant_admin", "torfaen"),
              "platform_admin": make_user("platform_admin", "platform"), "finance": make_user("finance", "platform")}
    server = server_seen_active(people["member"], "ledger-web", utc("2026-11-03T09:00:00"))
    server_seen_active(people["tenant_admin"], "ledger-db", utc("2026-11-10T12:00:00"))
    with frozen_at(utc("2026-12-01T00:00:10")):
        db.session.add(m.ReconcileRun())
        db.session.commit()
        result = months.close_month(MONTH, "test")
    assert result.line_count >= 6
    tokens = {role: create_api_token(None, user, f"final-{role}") for role, user in people.items()}
    db.session.commit()
    request_id = server.request_id or db.session.scalar(select(m.ServerRequest.id).limit(1)) or 1
    return {"people": people, "server": server, "request_id": request_id, "tokens": tokens, "snapshot": _snapshot()}


def _urls_for(rule: Any, closed: dict[str, Any]) -> list[str]:
    return rule_paths(rule, server_id=closed["server"].id, request_id=closed["request_id"],
                      user_id=closed["people"]["member"].id, month=MONTH)


def test_no_route_changes_a_closed_line(app: Any, closed_month: dict[str, Any]) -> None:
    rules = [r for r in app.url_map.iter_rules() if (r.methods or set()) & STATE_CHANGING
             and r.endpoint != "static"]
    assert len(rules) >= 15, [r.rule for r in rules]
    web = {role: signed_in_client(app, user.email) for role, user in closed_month["people"].items()}
    api = {role: {"Authorization": f"Bearer {token}"} for role, token in closed_month["tokens"].items()}
    called: set[str] = set()

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def hit(rule: Any, body: dict[str, str]) -> None:
        for path in _urls_for(rule, closed_month):
            hit_path(rule, path, body)

    def hit_path(rule: Any, path: str, body: dict[str, str]) -> None:
        for method in sorted((rule.methods or set()) & STATE_CHANGING):
            for role in closed_month["people"]:
                if path.startswith("/api/"):
                    response = app.test_client().open(path, method=method, json=body, headers=api[role])
                else:
                    response = web[role].open(path, method=method, data=body)
                assert response.status_code < 500, (method, path, role, body, response.data[:400])
                db.session.rollback()
                assert _snapshot() == closed_month["snapshot"], (method, path, role, body)

    for rule in rules:
        if rule.rule in NOT_CALLED:
            continue
        with frozen_at(utc("2027-01-15T10:00:00")):
            hit(rule)
        called.add(rule.rule)
    assert called | set(NOT_CALLED) == {r.rule for r in rules}


def test_no_cli_command_changes_a_closed_line(app: Any, closed_month: dict[str, Any], tmp_path: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cloud_portal.cli import main
    monkeypatch.setenv("CLOUD_PORTAL_DATABASE_URL", str(app.config["SQLALCHEMY_DATABASE_URI"]))
    monkeypatch.setenv("CLOUD_PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("CLOUD_PORTAL_SECRET_KEY", "closed-lines-test-" + "k" * 32)

    class Runner:
        def invoke(self, args: list[str]) -> Any:
            return CliRunner().invoke(main, args)
    runner = Runner()
    member = closed_month["people"]["member"]
    again = runner.invoke(args=["billing", "close", MONTH])
    assert again.exit_code == 0 and "already closed" in again.output, again.output
    for fmt in ("csv", "xlsx", "pdf", "journal"):
        out = tmp_path / f"x.{fmt}"
        result = runner.invoke(args=["billing", "export", "--month", MONTH, "--format", fmt, "--tenant", "torfaen",
                                     "--out", str(out)])
        assert result.exit_code == 0, result.output
    statement = runner.invoke(args=["billing", "statement", member.email, "--month", MONTH])
    assert statement.exit_code == 0, statement.output
    for bad in (["billing", "close", "2026-13"], ["billing", "close", "November"],
                ["billing", "export", "--month", MONTH, "--format", "doc"]):
        assert runner.invoke(args=bad).exit_code != 0
    assert _snapshot() == closed_month["snapshot"]


def test_the_check_notices_a_changed_line(app: Any, closed_month: dict[str, Any]) -> None:
    """The comparison above can fail: deleting a line (allowed to the database owner, unlike an
    update) shows as a difference."""
    first = db.session.scalars(select(StatementLine)).first()
    db.session.delete(first)
    db.session.commit()
    assert _snapshot() != closed_month["snapshot"]

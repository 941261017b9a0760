"""Schemathesis over the whole OpenAPI document, as each role, in-process (WSGI, SQLite, no cloud).

Every operation of /api/v1/openapi.json is called with requests generated from its own schema
(valid ones, and a few invalid ones), with a token of a member, a tenant admin, a platform admin
and finance. Each answer must be:

- no server error: no 5xx, except the 502 ``cloud_error`` an operation that asks the cloud
  declares (unit tests have no cloud configured);
- a status the document lists for the operation, with its content type and a body that
  matches the schema given for that status;
- for a refusal (4xx): nothing changed in the database (a digest of every row of every table,
  read through a connection of its own, and nothing left pending in the request's session).

Calls on one thing run once with generated ids (mostly not found) and once with the ids of the
seeded server, request and quota-increase request. Generation is derandomised with a fixed number of examples, so a run is repeatable.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, create_engine, select

from cloud_portal.extensions import db
from tests.conftest import REPO_ROOT
from tests.helpers import server_seen_active, utc

ARTIFACTS = REPO_ROOT / "test-artifacts"

#: Examples per operation and role; with 24 operations and four roles about 1,600 requests.
VALID_EXAMPLES = 12
INVALID_EXAMPLES = 5
#: Columns legitimately written by a refused call: a token's last use (noted before the view runs).
VOLATILE_COLUMNS = {("api_tokens", "last_used_at")}


def database_digest(engine: Engine) -> str:
    """A hash of every committed row of every table (less VOLATILE_COLUMNS), read on a connection
    of its own (so what the request's session holds uncommitted is not counted)."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE_COLUMNS]
            rows = sorted(repr(tuple(row)) for row in conn.execute(select(*columns)))
            digest.update(table.name.encode())
            for row in rows:
                digest.update(row.encode())
    return digest.hexdigest()


def no_server_error(response: Any, case: Any) -> None:
    """5xx is a bug, but for a declared 502 ``cloud_error`` (there is no cloud in unit tests)."""
    if response.status_code < 500:
        return
    declared = str(response.status_code) in case.operation.definition.raw.get("responses", {})
    body = response.json() if response.headers.get("content-type", [""])[0].startswith("application/json") else {}
    assert declared and response.status_code == 502 and body.get("code") == "cloud_error", (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}")


@pytest.fixture
def fuzz_world(make_app: Callable[..., Any], database_url: str) -> Any:
    """An app with no queue worker and no cloud, a tenant with one of everything, and a token per role."""
    from cloud_portal.accounts.service import create_api_token
    from cloud_portal.quotas import service as quota_service
    from tests.helpers import create_user
    app = make_app(QUEUE_IMMEDIATE=False, QUEUE_URL="")
    with app.app_context():
        from cloud_portal.tenants.config_file import load_tenants_file
        from cloud_portal.tenants.service import sync_tenants
        from tests.conftest import TENANTS_FILE
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        people = {role: create_user(role, "platform" if role in ("platform_admin", "finance") else "torfaen")
                  for role in ("member", "tenant_admin", "platform_admin", "finance")}
        server = server_seen_active(people["member"], "fuzz-web", utc("2026-11-03T09:00:00"))
        increase = quota_service.create_increase(people["member"], {"vcpus": 4}, "fuzzing")
        tokens = {role: create_api_token(None, person, "fuzz") for role, person in people.items()}
        db.session.commit()
        # Ids of things that exist, so some calls are about them rather than about nothing (404).
        existing = {"server_id": server.id, "request_id": server.request_id, "increase_id": increase.id}
        yield app, tokens, database_url, existing


class Fuzzer:
    """Runs one operation's generated cases as one role, keeping the tallies and the last digest."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls = {"refused": 0, "accepted": 0}
        self.statuses: Counter[str] = Counter()
        #: The digest as the last refused call left the database (None after an accepted one).
        self.digest: str | None = None

    def run(self, operation: Any, mode: Any, examples: int, role: str, token: str,
            path_parameters: dict[str, int] | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        checks = [status_code_conformance, content_type_conformance, response_schema_conformance]

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def call(case: Any) -> None:
            before = self.digest or database_digest(self.engine)
            response = case.call(headers=headers)
            self.statuses[f"{case.method} {case.path} {response.status_code}"] += 1
            no_server_error(response, case)
            if mode == schemathesis.GenerationMode.POSITIVE:
                case.validate_response(response, checks=checks, headers=headers)
            if 400 <= response.status_code < 500:
                self.calls["refused"] += 1
                pending = db.session.new or db.session.dirty or db.session.deleted
                assert not pending, (role, case.method, case.formatted_path, response.status_code, pending)
                after = database_digest(self.engine)
                assert after == before, (f"{role}: {case.method} {case.formatted_path} answered "
                                         f"{response.status_code} but changed the database")
                self.digest = after
            else:
                self.calls["accepted"] += 1
                self.digest = None
            db.session.rollback()

        call()


def test_every_operation_as_every_role_keeps_its_contract(fuzz_world: Any) -> None:
    app, tokens, url, existing = fuzz_world
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24  # every operation of api.py and api_billing.py
    engine = create_engine(url)
    fuzzer = Fuzzer(engine)
    try:
        for role, token in tokens.items():
            for operation in operations:
                fuzzer.run(operation, schemathesis.GenerationMode.POSITIVE, VALID_EXAMPLES, role, token)
                fuzzer.run(operation, schemathesis.GenerationMode.NEGATIVE, INVALID_EXAMPLES, role, token)
                ids = {name: value for name, value in existing.items() if "{" + name + "}" in operation.path}
                if ids:
                    fuzzer.run(operation, schemathesis.GenerationMode.POSITIVE, VALID_EXAMPLES, role, token, ids)
    finally:
        engine.dispose()
    # What was answered how often, for a person wondering how far the fuzzer got.
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "api-fuzz.json").write_text(json.dumps(dict(sorted(fuzzer.statuses.items())), indent=1))
    # The fuzzer got past the door, not only refusals.
    assert fuzzer.calls["accepted"] > 200 and fuzzer.calls["refused"] > 200, fuzzer.calls

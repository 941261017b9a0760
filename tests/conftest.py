"""Shared fixtures: a migrated database (SQLite, or PostgreSQL when CLOUD_PORTAL_TEST_DATABASE_URL
is set), an app per test with side effects pointed nowhere, factories and an auth helper."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from cloud_portal import create_app
from cloud_portal.extensions import db as _db
from tests.helpers import PASSWORD, create_user, sign_in

REPO_ROOT = Path(__file__).resolve().parent.parent
TENANTS_FILE = REPO_ROOT / "tenants.yaml"
pytest_plugins = ["tests.fixtures.sandbox", "tests.fixtures.idp", "tests.fixtures.own_services"]


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {_test_database_label()}"


def _test_database_label() -> str:
    url = os.environ.get("CLOUD_PORTAL_TEST_DATABASE_URL")
    return re.sub(r"//[^@/]*@", "//***@", url) if url else "SQLite (temporary file)"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to head once per session (the schema is dropped and rebuilt first)."""
    url = os.environ.get("CLOUD_PORTAL_TEST_DATABASE_URL")
    if url:
        from cloud_portal import database_url as normalise
        url = normalise({"DATABASE_URL": url}, Path("."))
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.db'}"
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "QUEUE_IMMEDIATE": True,
                      "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance"))})
    with app.app_context():
        from cloud_portal.db_schema import upgrade_to_head
        upgrade_to_head()
    return url


def _wipe(url: str) -> None:
    """Delete every row (faster than rebuilding the schema; keeps the migrated tables)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(_db.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build apps on the session database; rows are wiped after the test."""
    apps = []

    def factory(**override: Any) -> Any:
        settings = {"ENV": "testing", "SECRET_KEY": "test-secret-key-" + "x" * 32,
                    "DATABASE_URL": database_url, "QUEUE_IMMEDIATE": True,
                    "INSTANCE_PATH": str(tmp_path / "instance"), "TENANTS_FILE": str(TENANTS_FILE),
                    "WTF_CSRF_ENABLED": False, "LOG_LEVEL": "WARNING",
                    # Most tests sign platform staff in with a password alone; the two-factor
                    # tests (test_two_factor.py, the browser tests) turn the requirement on.
                    "TWO_FACTOR_ROLES": ""}
        settings.update(override)
        app = create_app(settings)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            _db.session.remove()
            _db.engine.dispose()
    if apps:
        _wipe(database_url)


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Iterator[Any]:
    app = make_app()
    with app.app_context():
        yield app
        _db.session.remove()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def synced(app: Any) -> None:
    """The real tenants.yaml applied to the database."""
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import sync_tenants
    sync_tenants(load_tenants_file(TENANTS_FILE))
    _db.session.commit()


@pytest.fixture
def make_user(app: Any, synced: None) -> Callable[..., Any]:
    """make_user(role, tenant_slug, email=None) → a committed User with password PASSWORD."""
    return create_user


class AuthActions:
    def __init__(self, client: Any) -> None:
        self.client = client

    def sign_in(self, email: str, password: str = PASSWORD, **extra: Any) -> Any:
        return sign_in(self.client, email, password, **extra)

    def sign_out(self) -> Any:
        return self.client.post("/sign-out")


@pytest.fixture
def auth(client: Any) -> AuthActions:
    return AuthActions(client)


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1


@pytest.fixture
def count_queries(app: Any) -> Callable[[], Any]:
    """Use as ``with count_queries() as counter: ...``; counter.count is the number of SQL statements."""
    from contextlib import contextmanager

    @contextmanager
    def counting() -> Iterator[QueryCounter]:
        counter = QueryCounter()
        event.listen(_db.engine, "before_cursor_execute", counter)
        try:
            yield counter
        finally:
            event.remove(_db.engine, "before_cursor_execute", counter)

    return counting

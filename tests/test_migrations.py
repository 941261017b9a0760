"""Migrations: empty database to head, and the models match what the migrations build."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from cloud_portal import create_app
from cloud_portal.db_schema import upgrade_to_head
from cloud_portal.extensions import db


def _empty_database_url(tmp_path: Path) -> str:
    pg = os.environ.get("CLOUD_PORTAL_TEST_DATABASE_URL")
    if not pg:
        return f"sqlite:///{tmp_path / 'empty.db'}"
    # A separate schema-less database on the same server, so the session database is untouched.
    from cloud_portal import database_url
    base = database_url({"DATABASE_URL": pg}, tmp_path)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = "cloud_portal_migration_test"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


def test_empty_to_head_and_models_match(tmp_path: Path) -> None:
    url = _empty_database_url(tmp_path)
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path),
                      "QUEUE_IMMEDIATE": True})
    with app.app_context():
        assert inspect(db.engine).get_table_names() == []
        upgrade_to_head()
        tables = set(inspect(db.engine).get_table_names())
        assert {"tenants", "users", "audit_events", "quota_limits", "vm_sizes", "alembic_version"} <= tables
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models differ from the migrations; add a migration: {diff}"
        upgrade_to_head()  # a second run is a no-op
        db.engine.dispose()


def test_session_database_is_at_head(app: Any) -> None:
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from cloud_portal import MIGRATIONS_DIR
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert current == ScriptDirectory.from_config(config).get_current_head()


def test_ledger_microseconds_are_filled_in_exactly_for_existing_intervals(app: Any) -> None:
    """The migration that adds the ledger's microsecond columns fills them from the stored
    timestamps with this expression: exact to the microsecond on both databases, including a
    fraction SQLite's date functions would round up to the next second."""
    import importlib
    from datetime import UTC, datetime

    from cloud_portal.timeutil import UTCDateTime, epoch_micros
    migration = importlib.import_module("cloud_portal.migrations.versions.a7c3e9d41b20_usage_intervals_in_microseconds")
    dialect = db.engine.dialect
    column = "CAST(:moment AS TIMESTAMP WITH TIME ZONE)" if dialect.name == "postgresql" else ":moment"
    for moment in (datetime(2026, 11, 1, 10, 0, 59, 999_700, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
                   datetime(2027, 3, 28, 0, 59, 59, 1, tzinfo=UTC), datetime(2028, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)):
        stored = UTCDateTime().process_bind_param(moment, dialect)
        if dialect.name == "sqlite":  # as SQLAlchemy writes it
            stored = stored.strftime("%Y-%m-%d %H:%M:%S.%f")
        got = db.session.scalar(text(f"SELECT {migration._micros(column, dialect.name)}"), {"moment": stored})
        assert got == epoch_micros(moment), moment

"""Cwmwl Cymru portal: self-service private cloud for the public bodies sharing one data centre."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context, request, session
from sqlalchemy import event
from sqlalchemy.engine import Engine

from cloud_portal.config import check_settings, languages, load_settings
from cloud_portal.extensions import babel, csrf, db, login_manager, migrate

PACKAGE_DIR = Path(__file__).resolve().parent
#: Page templates live at the top of the repository (see STYLE.md), beside the package.
TEMPLATES_DIR = PACKAGE_DIR.parent / "templates"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def default_instance_path() -> Path:
    return Path(os.environ.get("CLOUD_PORTAL_INSTANCE_PATH") or Path.cwd() / "instance").resolve()


def database_url(settings: Mapping[str, Any], instance_path: Path) -> str:
    url = settings.get("DATABASE_URL") or f"sqlite:///{instance_path / 'portal.db'}"
    # psycopg 3 is the driver we install; plain postgresql:// would look for psycopg2.
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    elif url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    return url


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL lets readers run beside the writer; foreign keys are off by default in SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def create_app(config_override: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal: settings, extensions, blueprints. No network or database calls here."""
    override = dict(config_override or {})
    instance_path = Path(override.pop("INSTANCE_PATH", None) or default_instance_path())
    settings = load_settings(instance_path, override)
    check_settings(settings)

    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=True,
                template_folder=str(TEMPLATES_DIR))
    app.config.update(settings)
    if not app.config.get("SECRET_KEY"):
        # Development only (check_settings refuses production without a key): a per-process
        # key means sessions do not survive a restart, which is fine for a quick try-out.
        app.config["SECRET_KEY"] = os.urandom(32).hex()
    secure = app.config["SESSION_COOKIE_SECURE"]
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url(settings, instance_path),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        SESSION_COOKIE_SECURE=(app.config["ENV"] == "production") if secure is None else bool(secure),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="cwmwl_session",
        PERMANENT_SESSION_LIFETIME=int(app.config["SESSION_LIFETIME_SECONDS"]),
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,  # tokens live as long as the session
        BABEL_DEFAULT_LOCALE="en",
        BABEL_TRANSLATION_DIRECTORIES=str(PACKAGE_DIR / "translations"),
    )
    if app.config["ENV"] == "testing":
        app.testing = True
    logging.basicConfig(level=app.config["LOG_LEVEL"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import cloud_portal.billing.budgets  # noqa: F401  (the budget approval rule)
    import cloud_portal.billing.ledger  # noqa: F401  (the ledger listens to server-state changes)
    import cloud_portal.models  # noqa: F401  (all tables on the metadata)
    import cloud_portal.provisioning.timed  # noqa: F401  (new VMs get their tenant's office hours)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    login_manager.init_app(app)
    _configure_login()

    from cloud_portal.adapters.cloud import cloud
    cloud.init_app(app)
    from cloud_portal.adapters.queue import configure_queue
    configure_queue(app)
    import cloud_portal.jobs.provisioning  # noqa: F401  (registers tasks with the queue)
    import cloud_portal.jobs.tasks  # noqa: F401
    from cloud_portal.web import register_web
    register_web(app)
    return app


def _select_locale() -> str:
    offered = languages()
    if not has_request_context():
        # The worker, the CLI and services called directly: no person to ask, so the default.
        return offered[0]
    chosen = session.get("lang")
    if chosen in offered:
        return str(chosen)
    return request.accept_languages.best_match(offered) or offered[0]


def _configure_login() -> None:
    from flask_babel import lazy_gettext

    from cloud_portal.accounts.service import load_user_by_session_token

    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = lazy_gettext("Please sign in to see this page.")
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    login_manager.user_loader(load_user_by_session_token)

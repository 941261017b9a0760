"""Settings: built-in defaults, then the instance config file, then ``CLOUD_PORTAL_*`` variables.

Every setting is listed in :data:`DEFAULTS` with its type; the README's configuration
reference is written from this table.  Environment values are parsed with the type of
the default, so ``CLOUD_PORTAL_SIGNIN_MAX_FAILURES=3`` becomes the integer 3.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud_portal.errors import InvalidConfig

ENV_PREFIX = "CLOUD_PORTAL_"
#: Instance config file name inside the instance folder (Python syntax, UPPER_CASE names).
INSTANCE_CONFIG_NAME = "portal.cfg"

DEFAULTS: dict[str, Any] = {
    #: "development" or "production"; production refuses to start without a real SECRET_KEY.
    "ENV": "development",
    "SECRET_KEY": None,
    #: SQLAlchemy URL; empty means SQLite file ``portal.db`` in the instance folder.
    "DATABASE_URL": "",
    #: Huey storage: empty = SQLite file ``queue.db`` in the instance folder, or ``redis://…``.
    "QUEUE_URL": "",
    #: Run queued jobs inline instead of via a worker (tests only).
    "QUEUE_IMMEDIATE": False,
    "WORKER_THREADS": 4,
    #: Path of tenants.yaml (tenants, catalog, rate card).
    "TENANTS_FILE": "tenants.yaml",
    #: openstacksdk clouds.yaml and the cloud name inside it.
    "CLOUDS_YAML": "",
    "CLOUD_NAME": "cwmwl-sandbox",
    #: Network every server is attached to (a shared provider network in the data centre).
    "CLOUD_NETWORK": "shared-net",
    #: Longest a create (playbook + wait for ACTIVE) or an action may take before it fails.
    "PROVISION_TIMEOUT_SECONDS": 600,
    "ACTION_TIMEOUT_SECONDS": 300,
    #: A running job must renew its lease this often; reconciliation resumes a job whose
    #: lease ran out (its worker died) and fails it on the second time.
    "JOB_LEASE_SECONDS": 60,
    #: Cloud jobs one tenant may have running at once (others wait their turn).
    "TENANT_CONCURRENCY": 4,
    #: Transient cloud errors are retried this many times, with backoff from 2 seconds.
    "JOB_RETRIES": 3,
    #: Reconciliation enqueues a job again that is still queued this long after it was recorded
    #: or last claimed (its queue message was lost).
    "JOB_REQUEUE_AFTER_SECONDS": 300,
    #: ansible-runner folders (events, status; no secrets) are kept this many days for audit.
    "ARTIFACT_KEEP_DAYS": 30,
    #: Minutes between reconciliation runs (0 turns the periodic run off).
    "RECONCILE_INTERVAL_MINUTES": 3,
    #: Days an expired server stays stopped before it is deleted (its owner can extend it meanwhile).
    "EXPIRY_GRACE_DAYS": 7,
    #: Sign-in throttling: this many failures for one e-mail (or 4x that from one address)
    #: within the window blocks further attempts until the window has passed.
    "SIGNIN_MAX_FAILURES": 5,
    #: Roles that must sign in with a second factor (TOTP); others may turn it on.
    "TWO_FACTOR_ROLES": "platform_admin,finance",
    "SIGNIN_WINDOW_SECONDS": 900,
    #: Languages offered in the switch; the first is the default.
    "LANGUAGES": "en,cy",
    # Billing months are calendar months in this time zone (an IANA name).
    "BILLING_TIMEZONE": "Europe/London",
    #: Cookie flags; SESSION_COOKIE_SECURE defaults to True in production.
    "SESSION_COOKIE_SECURE": None,
    "SESSION_LIFETIME_SECONDS": 8 * 3600,
    "LOG_LEVEL": "INFO",
    #: Check every API answer against its declared model (web/api_spec.py); always on under
    #: tests. Off by default: it parses each answer again.
    "API_VALIDATE_RESPONSES": False,
    #: /metrics answers a bearer token equal to this (empty: no token accepted) or a client
    #: address in this comma-separated list of addresses and networks.
    "METRICS_TOKEN": "",
    "METRICS_ALLOWED_ADDRESSES": "127.0.0.1,::1",
    #: Outgoing e-mail (quota-increase decisions). Empty SMTP_HOST = e-mail off (logged instead).
    "SMTP_HOST": "",
    "SMTP_PORT": 25,
    #: Sender address of the portal's e-mail.
    "SMTP_FROM": "cloud-portal@localhost",
    #: Upgrade the connection with STARTTLS before sending (needs a certificate the host trusts).
    "SMTP_STARTTLS": False,
    #: Optional SMTP login; leave empty for a relay that trusts the portal's address.
    "SMTP_USERNAME": "",
    "SMTP_PASSWORD": "",
}

_DEV_SECRET_MARKERS = {"", "dev", "change-me", "changeme", "secret", "development"}


#: Settings whose environment value is a yes/no flag.
BOOLEAN_SETTINGS = {"QUEUE_IMMEDIATE", "SESSION_COOKIE_SECURE", "SMTP_STARTTLS"}


def _parse_env_value(name: str, raw: str, default: Any) -> Any:
    if name in BOOLEAN_SETTINGS:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise InvalidConfig(f"{ENV_PREFIX}{name}={raw!r}: expected true or false")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise InvalidConfig(f"{ENV_PREFIX}{name}={raw!r}: expected a whole number") from None
    return raw


def load_settings(instance_path: Path, override: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the merged settings: defaults → instance file → environment → override."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    config_file = instance_path / INSTANCE_CONFIG_NAME
    if config_file.is_file():
        namespace: dict[str, Any] = {}
        try:
            exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)  # noqa: S102 - operator-owned file
        except Exception as exc:  # a syntax error in the file must name the file
            raise InvalidConfig(f"{config_file}: cannot be read: {exc}") from exc
        settings.update({k: v for k, v in namespace.items() if k.isupper()})
    for key, default in DEFAULTS.items():
        raw = environ.get(ENV_PREFIX + key)
        if raw is not None:
            settings[key] = _parse_env_value(key, raw, default)
    if override:
        settings.update(override)
    return settings


def check_settings(settings: Mapping[str, Any]) -> None:
    """Refuse settings that would be unsafe or cannot work, with a message saying what to set."""
    env = settings["ENV"]
    if env not in {"development", "production", "testing"}:
        raise InvalidConfig(f"ENV={env!r}: expected development, production or testing")
    if env == "production":
        key = settings.get("SECRET_KEY") or ""
        if str(key).strip().lower() in _DEV_SECRET_MARKERS or len(str(key)) < 32:
            raise InvalidConfig(
                "Refusing to start in production without a real SECRET_KEY: set "
                f"{ENV_PREFIX}SECRET_KEY to a random value of at least 32 characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
    for key in ("JOB_REQUEUE_AFTER_SECONDS", "SIGNIN_MAX_FAILURES", "SIGNIN_WINDOW_SECONDS", "WORKER_THREADS",
                "PROVISION_TIMEOUT_SECONDS",
                "ACTION_TIMEOUT_SECONDS", "JOB_LEASE_SECONDS", "TENANT_CONCURRENCY", "ARTIFACT_KEEP_DAYS",
                "EXPIRY_GRACE_DAYS"):
        if int(settings[key]) < 1:
            raise InvalidConfig(f"{key}={settings[key]!r}: must be at least 1")
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(str(settings["BILLING_TIMEZONE"]))
    except (KeyError, ValueError) as exc:
        raise InvalidConfig(f"BILLING_TIMEZONE={settings['BILLING_TIMEZONE']!r}: not a time zone name "
                            f"such as Europe/London ({exc})") from None
    queue_url = settings.get("QUEUE_URL") or ""
    if queue_url and not queue_url.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidConfig(f"QUEUE_URL={queue_url!r}: expected empty (SQLite) or a redis:// URL")


def languages(app: Any = None) -> list[str]:
    """The offered page languages (LANGUAGES), e.g. ["en", "cy"], of ``app`` or the current app."""
    from flask import current_app
    return [code.strip() for code in (app or current_app).config["LANGUAGES"].split(",") if code.strip()]

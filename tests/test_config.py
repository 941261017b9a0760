"""Settings: defaults → instance file → environment; production refuses a missing SECRET_KEY."""
from __future__ import annotations

from pathlib import Path

import pytest

from cloud_portal import create_app
from cloud_portal.config import check_settings, load_settings
from cloud_portal.errors import InvalidConfig


def test_precedence(tmp_path: Path) -> None:
    (tmp_path / "portal.cfg").write_text("CLOUD_NAME = 'from-file'\nWORKER_THREADS = 2\n")
    settings = load_settings(tmp_path, environ={"CLOUD_PORTAL_WORKER_THREADS": "7"})
    assert settings["CLOUD_NAME"] == "from-file"
    assert settings["WORKER_THREADS"] == 7
    assert load_settings(tmp_path, {"CLOUD_NAME": "override"}, environ={})["CLOUD_NAME"] == "override"


def test_bad_environment_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="CLOUD_PORTAL_WORKER_THREADS='many': expected a whole number"):
        load_settings(tmp_path, environ={"CLOUD_PORTAL_WORKER_THREADS": "many"})
    with pytest.raises(InvalidConfig, match="CLOUD_PORTAL_QUEUE_IMMEDIATE='perhaps': expected true or false"):
        load_settings(tmp_path, environ={"CLOUD_PORTAL_QUEUE_IMMEDIATE": "perhaps"})


def test_broken_instance_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "portal.cfg").write_text("SECRET_KEY = \n")
    with pytest.raises(InvalidConfig, match="portal.cfg: cannot be read"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize("key", [None, "", "dev", "change-me", "short-key"])
def test_production_refuses_without_real_secret_key(tmp_path: Path, key: str | None) -> None:
    with pytest.raises(InvalidConfig, match="Refusing to start in production without a real SECRET_KEY"):
        create_app({"ENV": "production", "SECRET_KEY": key, "INSTANCE_PATH": str(tmp_path)})


def test_production_starts_with_a_real_key(tmp_path: Path) -> None:
    app = create_app({"ENV": "production", "SECRET_KEY": "s" * 40, "INSTANCE_PATH": str(tmp_path)})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    # Building the app touched nothing on disk: the queue and database open on first use.
    assert list(tmp_path.iterdir()) == []


def test_unknown_environment_and_queue_url(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="ENV='staging'"):
        check_settings({**load_settings(tmp_path, environ={}), "ENV": "staging"})
    with pytest.raises(InvalidConfig, match="QUEUE_URL='amqp://x': expected empty"):
        check_settings({**load_settings(tmp_path, environ={}), "QUEUE_URL": "amqp://x"})

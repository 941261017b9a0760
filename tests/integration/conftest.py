"""Fixtures for tests against the sandbox cloud: an app wired to it, tenants synced to OpenStack."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloud_portal.extensions import db


@pytest.fixture(scope="session")
def cloud_settings(sandbox_cloud: Any) -> dict[str, Any]:
    return {"CLOUDS_YAML": str(sandbox_cloud.clouds_yaml), "CLOUD_NAME": sandbox_cloud.cloud_name,
            "QUEUE_IMMEDIATE": True, "JOB_RETRIES": 0, "PROVISION_TIMEOUT_SECONDS": 180,
            "ACTION_TIMEOUT_SECONDS": 180, "RECONCILE_INTERVAL_MINUTES": 0}


_cloud_synced: dict[str, bool] = {}


@pytest.fixture
def cloud_app(make_app: Callable[..., Any], cloud_settings: dict[str, Any], app: Any) -> Any:
    """An app using the sandbox, with tenants.yaml in the database and (once per session) in OpenStack.

    Depends on ``app`` so that its context is pushed first and this one sits on top: code
    under test that reads ``current_app`` then sees the sandbox settings.
    """
    from cloud_portal.adapters.cloud import CloudContext
    from cloud_portal.tenants.cloud_sync import sync_tenants_to_cloud
    from cloud_portal.tenants.config_file import load_tenants_file
    from cloud_portal.tenants.service import list_tenants, sync_tenants
    from tests.conftest import TENANTS_FILE
    app = make_app(**cloud_settings)
    with app.app_context():
        sync_tenants(load_tenants_file(TENANTS_FILE))
        db.session.commit()
        if not _cloud_synced.get("done"):
            ctx = CloudContext.from_settings(dict(app.config), app.instance_path)
            result = sync_tenants_to_cloud(ctx, list_tenants(include_platform=False))
            assert result.ok, result.failure_message
            db.session.commit()
            _cloud_synced["done"] = True
    ctx = app.app_context()
    ctx.push()
    yield app
    db.session.remove()
    ctx.pop()


@pytest.fixture
def immediate_queue_after(cloud_app: Any) -> Iterator[None]:
    """For tests that point the app's queue elsewhere (Redis, a worker): inline again afterwards."""
    yield
    from cloud_portal.adapters.queue import configure_queue
    cloud_app.config.update(QUEUE_IMMEDIATE=True, QUEUE_URL="")
    configure_queue(cloud_app)


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"

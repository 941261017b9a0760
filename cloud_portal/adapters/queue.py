"""The Huey queue: SQLite storage by default, Redis when QUEUE_URL is redis://…

Task modules decorate functions with ``@huey.task()`` at import time, so the Huey object
exists before configuration; :func:`configure_queue` points it at the configured storage.
"""
from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, has_app_context
from huey import Huey
from huey.storage import RedisStorage, SqliteStorage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

#: What the queue's storage raises when it cannot take a message (Redis down or restarting,
#: the SQLite queue file locked too long). Callers that enqueue after a commit catch these:
#: the job is already recorded as queued, and reconciliation enqueues it again later.
QUEUE_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError,
                                                     sqlite3.OperationalError)


class PortalHuey(Huey):
    """Huey whose storage is opened on first use, so building the app touches no file or server."""

    _storage: Any = None

    @property
    def storage(self) -> Any:
        if self._storage is None:
            filename = self.storage_kwargs.get("filename")
            if filename:
                Path(filename).parent.mkdir(parents=True, exist_ok=True)
            self._storage = self.create_storage()
        return self._storage

    @storage.setter
    def storage(self, value: Any) -> None:
        self._storage = value


# Immediate (in-memory) until configure_queue runs, so importing never touches storage.
huey = PortalHuey("cloud_portal", immediate=True, utc=True)
_worker_app: Flask | None = None


def configure_queue(app: Flask) -> None:
    """Select the storage for this process from the app's settings."""
    if app.config["QUEUE_IMMEDIATE"]:
        huey.immediate = True
        return
    url = app.config["QUEUE_URL"]
    if url:
        huey.storage_class = RedisStorage
        huey.storage_kwargs = {"url": url}
    else:
        huey.storage_class = SqliteStorage
        huey.storage_kwargs = {"filename": str(Path(app.instance_path) / "queue.db")}
    huey._immediate = False  # set directly: the property would recreate memory storage
    huey.storage = None  # opened on first use


def set_worker_app(app: Flask) -> None:
    global _worker_app
    _worker_app = app


def with_app_context(func: F) -> F:
    """Run a task inside an app context: the worker's app, or the caller's in immediate mode."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return func(*args, **kwargs)
        app = _worker_app
        if app is None:
            raise RuntimeError("queue task run outside the worker without an app context")
        with app.app_context():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def queue_status() -> dict[str, Any]:
    """Whether the queue storage answers, and how many tasks wait; used by /healthz and /metrics."""
    try:
        pending = huey.pending_count()
    except Exception as exc:  # noqa: BLE001 - storage down: report, don't raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    backend = "immediate" if huey.immediate else type(huey.storage).__name__
    heartbeat = None if huey.immediate else huey.get("worker-heartbeat", peek=True)
    return {"ok": True, "backend": backend, "pending": pending, "worker_heartbeat": heartbeat}

"""Helpers shared by the tests: one user factory, one sign-in, one free port, one wait for a server."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from itertools import count
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "correct horse battery"
_serial = count(1)


def create_user(role: str = "member", tenant: str = "torfaen", email: str | None = None) -> Any:
    """A committed account with password PASSWORD, in the current app context (tenants synced)."""
    from cloud_portal.accounts.service import add_user
    from cloud_portal.extensions import db
    from cloud_portal.tenants.service import get_tenant_by_slug
    email = email or f"{role.replace('_', '-')}{next(_serial)}.{tenant}@example.cymru"
    user, _ = add_user(None, email=email, display_name=f"Test {role}", role=role,
                       tenant=get_tenant_by_slug(tenant), password=PASSWORD)
    db.session.commit()
    return user


def sign_in(client: Any, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    """Sign ``client`` (a Flask test client) in through the sign-in form; returns the response."""
    return client.post("/sign-in", data={"email": email, "password": password, **extra})


def signed_in_client(app: Any, email: str, password: str = PASSWORD) -> Any:
    """A new test client of ``app``, signed in as ``email``."""
    client = app.test_client()
    sign_in(client, email, password)
    return client


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn_command(port: int, *, threads: int = 4) -> list[str]:
    """The command line that serves the portal on a loopback port as ``make run`` does (2 workers,
    the worker hooks of cloud_portal.serving), with this interpreter's gunicorn."""
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    return [gunicorn, "-c", "python:cloud_portal.serving", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--threads", str(threads), "--no-control-socket", "cloud_portal:create_app()"]


def wait_for_healthz(base: str, process: subprocess.Popen[Any], timeout_s: float = 60) -> None:
    """Wait until ``base``/healthz answers 200; FAIL the test (with the server's errors) if the
    process exits or the time runs out, so a server that never came up cannot pass unnoticed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stderr = process.stderr.read() if process.stderr else ""
            pytest.fail(f"{base}/healthz did not answer 200 within {timeout_s:.0f}s "
                        f"(exit code {process.poll()}): {stderr}", pytrace=False)
        time.sleep(0.2)


def utc(text: str) -> Any:
    """"2026-11-01T00:00:00" → that instant in UTC (aware)."""
    from datetime import UTC, datetime
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def server_seen_active(user: Any, name: str, when: Any, *, kind: str = "vm", size: str = "small",
                       hall: str = "local-government") -> Any:
    """A server ordered by ``user`` through the service path and first seen ACTIVE at ``when``
    (the test plays the provision job's part: no queue, no cloud)."""
    from cloud_portal.adapters.openstack import ServerInfo
    from cloud_portal.extensions import db
    from cloud_portal.provisioning import leases, servers
    from cloud_portal.provisioning import models as m
    from cloud_portal.provisioning import requests as orders
    from cloud_portal.unit_of_work import discard_pending
    request = orders.submit_request(user, kind=kind, catalog_key=size, image_key="debian-12" if kind == "vm" else None,
                                    data_hall=hall, name=name)
    db.session.commit()
    discard_pending()
    info = ServerInfo(id=f"nova-{name}", name=name, status="ACTIVE", project_id="p", flavor_name=request.flavor,
                      availability_zone=hall, fixed_ip=None, fault=None)
    server = servers.create_from_request(request, info, at=when)
    request.state = m.ACTIVE
    leases.finish(leases.latest_job(request_id=request.id), m.JOB_SUCCEEDED)
    db.session.commit()
    return server


def rule_paths(rule: Any, *, server_id: int, request_id: int, user_id: int, month: str = "2026-11",
               slug: str = "torfaen") -> list[str]:
    """Every path of a URL rule with its variables pointing at the given objects: one per choice
    of an ``any(...)`` variable (each action of a server, say). For the route walks."""
    from werkzeug.routing import AnyConverter, IntegerConverter
    choices: list[dict[str, Any]] = [{}]
    for name in rule.arguments:
        converter = rule._converters[name]  # noqa: SLF001
        options: list[Any]
        if isinstance(converter, AnyConverter):
            options = sorted(converter.items)
        elif isinstance(converter, IntegerConverter):
            options = [server_id if "server" in name else request_id if "request" in name else user_id]
        elif "month" in name:
            options = [month]
        else:
            options = [slug]
        choices = [{**chosen, name: option} for chosen in choices for option in options]
    return [rule.build(values, append_unknown=False)[1] for values in choices]

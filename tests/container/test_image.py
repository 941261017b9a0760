"""The production image: built from the Dockerfile with podman, then run on a loopback port.

Slow (the first build installs every dependency; later builds reuse podman's layer cache), so it
is marked ``container``.  It fails, never skips, when podman cannot be set up or the build fails:
a broken Dockerfile must not pass unnoticed.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "scripts" / "podman-base-image.sh"
IMAGE = "localhost/cloud-portal:test"


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Podman:
    """podman with the settings from scripts/podman-base-image.sh."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings
        self.env = {**os.environ, "CONTAINERS_CONF": settings["CONTAINERS_CONF"]}

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["podman", "--runtime", self.settings["PODMAN_RUNTIME"], *args]
        try:
            result = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            pytest.fail(f"{shlex.join(cmd)} did not finish in {timeout} s:\n{_tail(out + err)}")
        if check and result.returncode != 0:
            pytest.fail(f"{shlex.join(cmd)} exited {result.returncode}:\n"
                        f"{_tail(result.stdout + result.stderr)}")
        return result

    def logs(self, name: str) -> str:
        result = self("logs", name, check=False)
        return result.stdout + result.stderr


@pytest.fixture(scope="session")
def podman() -> Podman:
    try:
        result = subprocess.run([str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{SETUP_SCRIPT} did not finish in 20 minutes:\n{_tail(str(exc.stderr or ''))}")
    if result.returncode != 0:
        pytest.fail(f"{SETUP_SCRIPT} exited {result.returncode}:\n{_tail(result.stdout + result.stderr)}")
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key] = " ".join(shlex.split(value))
    missing = {"CONTAINERS_CONF", "PODMAN_RUNTIME", "BASE_IMAGE", "PODMAN_BUILD_FLAGS"} - settings.keys()
    if missing:
        pytest.fail(f"{SETUP_SCRIPT} did not print {sorted(missing)}:\n{result.stdout}")
    return Podman(settings)


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    podman("build", *shlex.split(podman.settings["PODMAN_BUILD_FLAGS"]),
           "--build-arg", f"BASE={podman.settings['BASE_IMAGE']}", "-t", IMAGE, ".",
           timeout=1800)
    return IMAGE


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[str]]:
    """Names of containers the test started; all removed afterwards, whatever happened."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            podman("rm", "--force", "--time", "10", name, timeout=60, check=False)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_for_health(podman: Podman, name: str, url: str, timeout: float = 120) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = _get(url)
            if status != 503:  # 503 = up but a dependency is not (yet) healthy: keep waiting
                return status, body
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state not in {"created", "running"}:
            pytest.fail(f"container {name} is {state or 'gone'} before answering {url}:\n"
                        f"{_tail(podman.logs(name))}")
        if time.monotonic() > deadline:
            pytest.fail(f"no answer from {url} within {timeout} s:\n{_tail(podman.logs(name))}")
        time.sleep(1)


def test_image_serves_the_portal_as_non_root(podman: Podman, image: str, containers: list[str]) -> None:
    name = f"cloud-portal-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    containers.append(name)
    podman("run", "--detach", "--name", name, "--network=host",
           "--env", f"CLOUD_PORTAL_SECRET_KEY={secrets.token_urlsafe(48)}",
           "--env", "HOST=127.0.0.1", "--env", f"PORT={port}", image)

    status, body = _wait_for_health(podman, name, f"http://127.0.0.1:{port}/healthz")
    assert status == 200, f"/healthz answered {status}: {body}\n{_tail(podman.logs(name))}"
    assert json.loads(body)["status"] == "ok", body

    # Templates sit beside the package in the image, so pages render.
    status, page = _get(f"http://127.0.0.1:{port}/sign-in")
    assert status == 200, f"/sign-in answered {status}:\n{_tail(page)}\n{_tail(podman.logs(name))}"
    assert 'action="/sign-in"' in page and 'name="password"' in page, _tail(page)

    # The image's HEALTHCHECK is present and passes (podman fails it if none is defined).
    health = podman("healthcheck", "run", name, check=False)
    assert health.returncode == 0, f"healthcheck: {health.stdout}{health.stderr}"

    # Neither commands run in the container nor the server itself are root.
    assert podman("exec", name, "id", "-u").stdout.strip() != "0"
    proc1 = podman("exec", name, "cat", "/proc/1/status").stdout
    uid_line = next(line for line in proc1.splitlines() if line.startswith("Uid:"))
    assert "0" not in uid_line.split()[1:], uid_line  # real, effective, saved, filesystem
    assert "gunicorn" in podman("exec", name, "cat", "/proc/1/cmdline").stdout

    # PDF statements render in the image (WeasyPrint finds Pango and a font there).
    export = podman("exec", name, "cloud-portal", "billing", "export", "--month", "2026-11", "--format", "pdf",
                    "--tenant", "torfaen", "--out", "/tmp/statement.pdf", check=False)
    assert export.returncode == 0, f"PDF export in the image: {export.stdout}{export.stderr}"
    assert podman("exec", name, "head", "-c", "5", "/tmp/statement.pdf").stdout == "%PDF-"


def test_worker_command_runs_the_queue_consumer(podman: Podman, image: str, containers: list[str]) -> None:
    name = f"cloud-portal-worker-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    podman("run", "--detach", "--name", name, "--network=none",
           "--env", f"CLOUD_PORTAL_SECRET_KEY={secrets.token_urlsafe(48)}", image, "worker")
    deadline = time.monotonic() + 60
    while "worker consuming from" not in (logs := podman.logs(name)):
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state != "running" or time.monotonic() > deadline:
            pytest.fail(f"worker container {name} is {state or 'gone'} and never started "
                        f"consuming:\n{_tail(logs)}")
        time.sleep(1)


def test_image_refuses_to_start_without_a_secret_key(podman: Podman, image: str,
                                                     containers: list[str]) -> None:
    name = f"cloud-portal-nokey-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    # podman passes no host environment unless told to, so the container has no key.
    result = podman("run", "--name", name, "--network=none", image, timeout=180, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"started without a SECRET_KEY:\n{_tail(output)}"
    assert "CLOUD_PORTAL_SECRET_KEY" in output, _tail(output)

"""The sandbox's VNC consoles, with openstacksdk alone: Nova hands out a noVNC address on the
sandbox's nova-novncproxy (127.0.0.1:6080), its token is one Nova itself accepts, and the proxy
answers HTTP. The address is never followed into a VNC session: the fake virt driver's VNC host
is not a real machine."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxCloud

pytestmark = [
    pytest.mark.integration,
    # openstacksdk 4.14 warns about its own internals on almost every call.
    pytest.mark.filterwarnings("ignore:::openstack.*"),
]

# What sandbox/sandboxctl configures as [vnc] novncproxy_base_url (it prints it on start too).
NOVNCPROXY_BASE_URL = "http://127.0.0.1:6080/vnc_lite.html"
WAIT = 180


def _token_of(console_url: str) -> str:
    """noVNC addresses carry the token inside the ``path`` argument: ...?path=%3Ftoken%3D<token>."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(console_url).query)
    inner = query.get("path", [""])[0]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(inner).query).get("token", [""])[0]
    assert token, console_url
    return token


def _nova_token_check(conn: Any, token: str) -> Any:
    """Nova's own check of a console token (what the proxy asks before it connects), as admin."""
    return conn.compute.get(f"/os-console-auth-tokens/{urllib.parse.quote(token, safe='')}",
                            microversion="2.31", raise_exc=False)


@pytest.fixture(scope="module")
def admin(sandbox_cloud: SandboxCloud) -> Iterator[Any]:
    conn = sandbox_cloud.connect()
    yield conn
    conn.close()


@pytest.fixture
def server(admin: Any) -> Iterator[Any]:
    net = admin.network.find_network("shared-net", ignore_missing=False)
    created = admin.compute.create_server(
        name=f"it-console-{uuid.uuid4().hex[:8]}",
        flavor_id=admin.compute.find_flavor("cc.small", ignore_missing=False).id,
        image_id=admin.image.find_image("debian-12", ignore_missing=False).id,
        networks=[{"uuid": net.id}],
    )
    try:
        yield admin.compute.wait_for_server(created, status="ACTIVE", wait=WAIT)
    finally:
        try:
            admin.compute.delete_server(created, ignore_missing=True)
            admin.compute.wait_for_delete(created, wait=WAIT)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own failure
            print(f"cleanup: could not delete server {created.id}: {exc}")


def test_novnc_console_url_points_at_the_sandbox_proxy_with_a_token_nova_accepts(admin: Any, server: Any) -> None:
    proxy = urllib.parse.urlsplit(NOVNCPROXY_BASE_URL)
    urls = []
    for _ in range(2):
        console = admin.compute.create_server_remote_console(server, protocol="vnc", type="novnc")
        assert (console.protocol, console.type) == ("vnc", "novnc")
        urls.append(console.url)
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
            proxy.scheme, "127.0.0.1", proxy.port, proxy.path), url
        checked = _nova_token_check(admin, _token_of(url))
        assert checked.status_code == 200, checked.text
        assert checked.json()["console"]["instance_uuid"] == server.id
    assert _token_of(urls[0]) != _token_of(urls[1])  # a fresh token for each address

    made_up = _nova_token_check(admin, str(uuid.uuid4()))
    assert made_up.status_code == 404, made_up.text


def test_novnc_proxy_answers_http() -> None:
    try:
        with urllib.request.urlopen(NOVNCPROXY_BASE_URL, timeout=10) as resp:  # noqa: S310 - loopback http
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, b""
    assert status < 500, status
    if status == 200:
        assert b"<html" in body.lower()


def test_sandbox_start_says_where_the_proxy_is(sandbox_cloud: SandboxCloud) -> None:
    assert sandbox_cloud.novncproxy_base_url == NOVNCPROXY_BASE_URL

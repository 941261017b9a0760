"""Against the sandbox OpenStack cloud (real Keystone, Nova, Neutron, Glance, Placement on 127.0.0.1).

Every test makes its own uniquely named resources and removes them, whatever happens.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxCloud

pytestmark = [
    pytest.mark.integration,
    # openstacksdk 4.14 warns about its own internals on almost every call.
    pytest.mark.filterwarnings("ignore:::openstack.*"),
]

HALLS = ("nhs", "education", "local-government", "police")
SHARED_NET = "shared-net"
SHARED_CIDR = ipaddress.ip_network("10.20.0.0/16")
WAIT = 180

# What tenants.yaml's catalog names (flavor: vcpus, ram MiB, disk GB; image: min_disk GB).
FLAVORS = {
    "cc.small": (1, 2048, 20),
    "cc.medium": (2, 4096, 40),
    "cc.large": (4, 8192, 80),
    "cc.xlarge": (8, 16384, 160),
    "vd.standard": (2, 4096, 40),
    "vd.power": (4, 8192, 60),
}
IMAGES = {
    "debian-12": 10,
    "ubuntu-24.04": 10,
    "rocky-9": 10,
    "desktop-ubuntu-24.04": 20,
    "desktop-windows-11": 40,
    "oversized-test": 200,
}


def unique(prefix: str) -> str:
    return f"it-{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(sandbox_cloud: SandboxCloud) -> Iterator[Any]:
    conn = sandbox_cloud.connect()
    yield conn
    conn.close()


def boot(conn: Any, name: str, *, flavor: str = "cc.small", image: str = "debian-12", **kwargs: Any) -> Any:
    net = conn.network.find_network(SHARED_NET, ignore_missing=False)
    return conn.compute.create_server(
        name=name,
        flavor_id=conn.compute.find_flavor(flavor, ignore_missing=False).id,
        image_id=conn.image.find_image(image, ignore_missing=False).id,
        networks=[{"uuid": net.id}],
        **kwargs,
    )


def delete_quietly(conn: Any, server: Any) -> None:
    try:
        conn.compute.delete_server(server, ignore_missing=True)
        conn.compute.wait_for_delete(server, wait=WAIT)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own failure
        print(f"cleanup: could not delete server {getattr(server, 'id', server)}: {exc}")


def fixed_ips(server: Any) -> list[str]:
    return [a["addr"] for a in (server.addresses or {}).get(SHARED_NET, []) if a.get("OS-EXT-IPS:type") == "fixed"]


def test_seeded_like_the_data_centre(admin: Any) -> None:
    flavors = {f.name: (f.vcpus, f.ram, f.disk) for f in admin.compute.flavors()}
    for name, spec in FLAVORS.items():
        assert flavors.get(name) == spec, name
    images = {i.name: i for i in admin.image.images()}
    for name, min_disk in IMAGES.items():
        assert images[name].status == "active", name
        assert images[name].min_disk == min_disk, name
        assert images[name].visibility == "public", name
    zones = {z.name for z in admin.compute.availability_zones() if z.state["available"]}
    assert set(HALLS) <= zones
    net = admin.network.find_network(SHARED_NET, ignore_missing=False)
    assert net.is_shared
    subnets = list(admin.network.subnets(network_id=net.id))
    assert [ipaddress.ip_network(s.cidr) for s in subnets] == [SHARED_CIDR]
    assert not subnets[0].is_dhcp_enabled


def test_server_lifecycle_on_shared_network(admin: Any) -> None:
    server = boot(admin, unique("life"))
    try:
        server = admin.compute.wait_for_server(server, status="ACTIVE", wait=WAIT)
        ips = fixed_ips(server)
        assert len(ips) == 1 and ipaddress.ip_address(ips[0]) in SHARED_CIDR, server.addresses
        ports = list(admin.network.ports(device_id=server.id))
        assert [p.status for p in ports] == ["ACTIVE"]

        admin.compute.stop_server(server)
        admin.compute.wait_for_server(server, status="SHUTOFF", wait=WAIT)
        admin.compute.start_server(server)
        admin.compute.wait_for_server(server, status="ACTIVE", wait=WAIT)

        admin.compute.resize_server(server, admin.compute.find_flavor("cc.medium", ignore_missing=False).id)
        server = admin.compute.wait_for_server(server, status="VERIFY_RESIZE", wait=WAIT)
        admin.compute.confirm_server_resize(server)
        server = admin.compute.wait_for_server(server, status="ACTIVE", wait=WAIT)
        assert server.flavor.name == "cc.medium"
        assert server.flavor.vcpus == 2

        admin.compute.delete_server(server)
        admin.compute.wait_for_delete(server, wait=WAIT)
        assert admin.compute.find_server(server.id, ignore_missing=True) is None
        assert list(admin.network.ports(device_id=server.id)) == []
    finally:
        delete_quietly(admin, server)


@pytest.fixture
def quota_project(admin: Any) -> Iterator[tuple[Any, Any]]:
    """A fresh project with a member user; yields (project, user's connection)."""
    project = admin.identity.create_project(name=unique("proj"), domain_id="default")
    password = secrets.token_hex(12)
    user = admin.identity.create_user(name=unique("user"), password=password, domain_id="default")
    conn = None
    try:
        member = admin.identity.find_role("member", ignore_missing=False)
        admin.identity.assign_project_role_to_user(project, user, member)
        conn = admin.connect_as(username=user.name, password=password, project_name=project.name,
                                user_domain_name="Default", project_domain_name="Default")
        yield project, conn
    finally:
        for server in admin.compute.servers(all_projects=True, project_id=project.id):
            delete_quietly(admin, server)
        for port in admin.network.ports(project_id=project.id):
            admin.network.delete_port(port, ignore_missing=True)
        if conn is not None:
            conn.close()
        admin.identity.delete_user(user, ignore_missing=True)
        admin.identity.delete_project(project, ignore_missing=True)


def test_project_nova_quota_refuses_over_quota_boot(admin: Any, quota_project: tuple[Any, Any]) -> None:
    from openstack import exceptions

    project, conn = quota_project
    admin.set_compute_quotas(project.id, instances=1, cores=4, ram=8192)
    first = boot(conn, unique("q1"))
    conn.compute.wait_for_server(first, status="ACTIVE", wait=WAIT)
    with pytest.raises(exceptions.HttpException) as refused:
        boot(conn, unique("q2"))
    assert refused.value.status_code == 403
    assert "Quota exceeded for instances" in str(refused.value)
    assert [s.id for s in conn.compute.servers()] == [first.id]


@pytest.mark.parametrize("hall", HALLS)
def test_server_lands_only_in_the_zone_asked_for(admin: Any, hall: str) -> None:
    server = boot(admin, unique(f"az-{hall}"), availability_zone=hall)
    try:
        server = admin.compute.wait_for_server(server, status="ACTIVE", wait=WAIT)
        assert server.availability_zone == hall
        assert server.compute_host == f"hall-{hall}-1"
        aggregate = next(a for a in admin.compute.aggregates() if a.availability_zone == hall)
        assert server.compute_host in aggregate.hosts
    finally:
        delete_quietly(admin, server)


def test_boot_into_unknown_zone_is_refused(admin: Any) -> None:
    from openstack import exceptions

    with pytest.raises(exceptions.BadRequestException):
        boot(admin, unique("az-none"), availability_zone="no-such-hall")


PLAYBOOK = textwrap.dedent(
    """\
    - name: Sandbox server through openstack.cloud
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Server is {{ server_state }}
          openstack.cloud.server:
            cloud: "{{ cloud_name }}"
            name: "{{ server_name }}"
            image: debian-12
            flavor: cc.small
            network: shared-net
            availability_zone: education
            auto_ip: false
            state: "{{ server_state }}"
            wait: true
            timeout: 300
    """
)


def run_playbook(tmp_path: Path, sandbox_cloud: SandboxCloud, server_name: str, state: str) -> Any:
    import ansible_runner

    private = tmp_path / f"runner-{state}"
    (private / "project").mkdir(parents=True)
    (private / "project" / "server.yml").write_text(PLAYBOOK)
    (private / "inventory").mkdir()
    (private / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    venv_bin = str(Path(sys.executable).parent)
    return ansible_runner.run(
        private_data_dir=str(private),
        playbook="server.yml",
        # Only names, never secrets, as extra vars: the modules read clouds.yaml themselves.
        extravars={"cloud_name": sandbox_cloud.cloud_name, "server_name": server_name, "server_state": state},
        envvars={
            "OS_CLIENT_CONFIG_FILE": str(sandbox_cloud.clouds_yaml),
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        },
        quiet=True,
        timeout=600,
    )


def runner_output(result: Any) -> str:
    try:
        return result.stdout.read()[-4000:]
    except Exception:  # noqa: BLE001
        return "(no runner output)"


def test_ansible_openstack_cloud_server_boots_and_deletes(
    tmp_path: Path, sandbox_cloud: SandboxCloud, admin: Any
) -> None:
    name = unique("ansible")
    try:
        created = run_playbook(tmp_path, sandbox_cloud, name, "present")
        assert created.rc == 0 and created.status == "successful", runner_output(created)
        server = admin.compute.find_server(name, ignore_missing=False)
        server = admin.compute.get_server(server.id)
        assert server.status == "ACTIVE"
        assert server.availability_zone == "education"
        assert fixed_ips(server)

        deleted = run_playbook(tmp_path, sandbox_cloud, name, "absent")
        assert deleted.rc == 0 and deleted.status == "successful", runner_output(deleted)
        assert admin.compute.find_server(name, ignore_missing=True) is None
        assert list(admin.network.ports(device_id=server.id)) == []
    finally:
        leftover = admin.compute.find_server(name, ignore_missing=True)
        if leftover is not None:
            delete_quietly(admin, leftover)


@pytest.mark.parametrize("service,port", [("keystone", 5000), ("placement", 8778), ("glance", 9292),
                                          ("neutron", 9696), ("nova-api", 8774)])
def test_an_idle_pooled_connection_is_still_open_when_reused(sandbox_cloud: SandboxCloud, service: str,
                                                              port: int) -> None:
    """The services' clients keep pooled connections and reuse them whenever they like; a server
    that closes them after gunicorn's default 2 s idle reset boots under load ("No valid host"
    when the scheduler's call to Placement hit a closing connection). One connection, two
    requests 3 s apart: the second must travel on the same socket."""
    import http.client
    import time

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        first = conn.getresponse()
        first.read()
        assert first.status < 500, f"{service}: {first.status}"
        assert not first.will_close, f"{service} closes the connection after each response"
        socket_before = conn.sock
        time.sleep(3)
        conn.request("GET", "/")  # raises ConnectionResetError / RemoteDisconnected if closed
        second = conn.getresponse()
        second.read()
        assert second.status < 500 and conn.sock is socket_before, f"{service}: connection was not kept"
    finally:
        conn.close()

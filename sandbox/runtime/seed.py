"""Seed the sandbox cloud like the real data centre (idempotent).

Run by sandboxctl with the services venv's Python (it needs openstacksdk):

    seed.py catalog   --clouds-yaml F --secrets F
    seed.py resources --clouds-yaml F --secrets F --image-file F --discover-cmd "..."

``catalog`` makes what the services need to talk to each other (service
project, service users, catalog endpoints); ``resources`` makes what the
portal and the tests use (flavors, images, availability zones, shared network).
"""

import argparse
import json
import shlex
import subprocess
import sys
import time

import openstack

CLOUD = "cwmwl-sandbox"
REGION = "RegionOne"
SERVICE_USERS = ("placement", "glance", "nova", "neutron")
SERVICES = (
    # (name, type, public URL)
    ("placement", "placement", "http://127.0.0.1:8778"),
    ("glance", "image", "http://127.0.0.1:9292"),
    ("nova", "compute", "http://127.0.0.1:8774/v2.1"),
    ("neutron", "network", "http://127.0.0.1:9696"),
)
FLAVORS = (
    # name, vcpus, ram MiB, disk GB (the catalog in tenants.yaml uses these names)
    ("cc.small", 1, 2048, 20),
    ("cc.medium", 2, 4096, 40),
    ("cc.large", 4, 8192, 80),
    ("cc.xlarge", 8, 16384, 160),
    ("vd.standard", 2, 4096, 40),
    ("vd.power", 4, 8192, 60),
)
IMAGES = (
    # name, min_disk GB
    ("debian-12", 10),
    ("ubuntu-24.04", 10),
    ("rocky-9", 10),
    ("desktop-ubuntu-24.04", 20),
    ("desktop-windows-11", 40),
    ("oversized-test", 200),
)
HALLS = ("nhs", "education", "local-government", "police")
NETWORK = "shared-net"
SUBNET = "shared-subnet"
CIDR = "10.20.0.0/16"


def log(msg):
    print(f"seed: {msg}", flush=True)


def connect(clouds_yaml):
    config = openstack.config.OpenStackConfig(config_files=[clouds_yaml])
    region = config.get_one(cloud=CLOUD)
    return openstack.connection.Connection(config=region)


def seed_catalog(conn, secrets):
    identity = conn.identity
    domain = identity.find_domain("default", ignore_missing=False)
    project = identity.find_project("service", domain_id=domain.id)
    if project is None:
        project = identity.create_project(name="service", domain_id=domain.id,
                                          description="OpenStack service users")
        log("project service created")
    roles = {}
    for role_name in ("admin", "service", "member", "reader"):
        role = identity.find_role(role_name)
        if role is None:
            role = identity.create_role(name=role_name)
            log(f"role {role_name} created")
        roles[role_name] = role
    for user_name in SERVICE_USERS:
        user = identity.find_user(user_name, domain_id=domain.id)
        if user is None:
            user = identity.create_user(name=user_name, domain_id=domain.id,
                                        password=secrets["service_password"],
                                        default_project_id=project.id)
            log(f"user {user_name} created")
        else:
            # The password lives in the sandbox home; keep Keystone in step with it.
            identity.update_user(user, password=secrets["service_password"])
        for role_name in ("admin", "service"):
            identity.assign_project_role_to_user(project, user, roles[role_name])
    for name, type_, url in SERVICES:
        service = identity.find_service(name)
        if service is None:
            service = identity.create_service(name=name, type=type_, enabled=True)
            log(f"service {name} created")
        endpoints = list(identity.endpoints(service_id=service.id, interface="public"))
        if endpoints and endpoints[0].url == url:
            continue
        for endpoint in endpoints:
            identity.delete_endpoint(endpoint)
        identity.create_endpoint(service_id=service.id, interface="public", url=url,
                                 region_id=REGION, enabled=True)
        log(f"endpoint {type_} {url} created")


def seed_quotas(conn):
    # The admin project runs the benchmark and many tests: make quotas no obstacle.
    admin_project = conn.identity.find_project("admin", ignore_missing=False)
    conn.set_compute_quotas(admin_project.id, instances=1000, cores=8000,
                            ram=16 * 1024 * 1024)
    conn.network.update_quota(admin_project.id, port=5000, network=100, subnet=100)


def wait_for_compute_hosts(conn, hosts, timeout=180):
    """Every fake compute host has reported in and is up."""
    deadline = time.monotonic() + timeout
    while True:
        services = {s.host: s for s in conn.compute.services(binary="nova-compute")}
        up = [h for h in hosts if h in services and services[h].state == "up"]
        if len(up) == len(hosts):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"seed: compute hosts not all up after {timeout}s: "
                             f"up={up}, expected={list(hosts)}")
        time.sleep(1)


def seed_flavors(conn):
    existing = {f.name: f for f in conn.compute.flavors(is_public=None)}
    for name, vcpus, ram, disk in FLAVORS:
        flavor = existing.get(name)
        if flavor is not None:
            if (flavor.vcpus, flavor.ram, flavor.disk) == (vcpus, ram, disk):
                continue
            conn.compute.delete_flavor(flavor)
        conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk,
                                   is_public=True)
        log(f"flavor {name} created")


def seed_images(conn, image_file):
    for name, min_disk in IMAGES:
        found = list(conn.image.images(name=name))
        good = [i for i in found if i.status == "active" and i.min_disk == min_disk
                and i.visibility == "public"]
        if good and len(found) == 1:
            continue
        for image in found:
            conn.image.delete_image(image)
        conn.create_image(name, filename=image_file, disk_format="raw",
                          container_format="bare", visibility="public",
                          min_disk=min_disk, min_ram=0, wait=True,
                          meta={"cwsbx_seed": "true"})
        log(f"image {name} created (min_disk {min_disk} GB)")


def seed_zones(conn, discover_cmd):
    aggregates = {a.name: a for a in conn.compute.aggregates()}
    wanted = {f"hall-{hall}": f"hall-{hall}-1" for hall in HALLS}
    if any(host not in (getattr(aggregates.get(name), "hosts", None) or [])
           for name, host in wanted.items()):
        # New compute hosts must be mapped to cell1 before aggregates take them.
        subprocess.run(shlex.split(discover_cmd), check=True, stdout=subprocess.DEVNULL)
    for hall in HALLS:
        name, host = f"hall-{hall}", f"hall-{hall}-1"
        aggregate = aggregates.get(name)
        if aggregate is None:
            aggregate = conn.compute.create_aggregate(name=name, availability_zone=hall)
            log(f"aggregate {name} (zone {hall}) created")
        if host not in (aggregate.hosts or []):
            conn.compute.add_host_to_aggregate(aggregate, host)
            log(f"host {host} added to {name}")


def seed_network(conn):
    network = conn.network.find_network(NETWORK)
    if network is None:
        network = conn.network.create_network(
            name=NETWORK, shared=True, provider_network_type="flat",
            provider_physical_network="physnet1")
        log(f"network {NETWORK} created")
    if not list(conn.network.subnets(network_id=network.id)):
        # An allocation range inside Neutron only: nothing is ever sent there.
        conn.network.create_subnet(name=SUBNET, network_id=network.id, ip_version=4,
                                   cidr=CIDR, enable_dhcp=False, gateway_ip=None)
        log(f"subnet {SUBNET} {CIDR} created")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=("catalog", "resources"))
    parser.add_argument("--clouds-yaml", required=True)
    parser.add_argument("--secrets", required=True)
    parser.add_argument("--image-file")
    parser.add_argument("--discover-cmd")
    args = parser.parse_args()
    with open(args.secrets) as fh:
        secrets = json.load(fh)
    conn = connect(args.clouds_yaml)
    if args.phase == "catalog":
        seed_catalog(conn, secrets)
    else:
        hosts = [f"hall-{hall}-1" for hall in HALLS]
        seed_flavors(conn)
        seed_images(conn, args.image_file)
        wait_for_compute_hosts(conn, hosts)
        seed_zones(conn, args.discover_cmd)
        seed_network(conn)
        seed_quotas(conn)
    log(f"{args.phase} ok")


if __name__ == "__main__":
    sys.exit(main())

"""Reading the cloud with openstacksdk: servers, flavors, images, quotas, console URLs.

Changes to the cloud go through playbooks (adapters.ansible); this module only reads and
waits.  Library exceptions are translated into one family: :class:`CloudUnavailable` for
things worth retrying (API down, 5xx, timeouts) and :class:`CloudRefused` for answers that
will not change on retry (not found, forbidden, bad request).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import openstack
from keystoneauth1 import exceptions as ks_exceptions
from openstack import exceptions as os_exceptions

from cloud_portal.errors import PortalError

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Server metadata key holding the portal request, so a retried create finds its server.
REQUEST_ID_KEY = "portal_request_id"


def request_tag(request_uid: str) -> str:
    """The metadata value for a request: "request-<uid>". Never all digits, because Ansible
    turns a templated "17" into the number 17, which Nova refuses as metadata."""
    return f"request-{request_uid}"


class CloudError(PortalError):
    """Base of the adapter's errors; the message is safe to log (no secrets)."""


class CloudUnavailable(CloudError):
    """Transient: the API did not answer or answered 5xx. Retrying later may work."""


class CloudRefused(CloudError):
    """Permanent: the cloud understood and said no (4xx). Retrying will not help."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class ServerInfo:
    id: str
    name: str
    #: Nova status: BUILD, ACTIVE, SHUTOFF, RESIZE, VERIFY_RESIZE, ERROR, DELETED, ...
    status: str
    project_id: str
    flavor_name: str | None
    availability_zone: str | None
    fixed_ip: str | None
    #: Nova's fault message for servers in ERROR.
    fault: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    task_state: str | None = None


@dataclass(frozen=True)
class ServerUsage:
    """One server in Nova's usage report: how long it existed in the period asked about."""

    server_id: str
    hours: Decimal
    started_at: datetime | None
    #: When Nova deleted it (terminated_at), or None while it exists.
    ended_at: datetime | None
    state: str


def _nova_time(value: str | None) -> datetime | None:
    """Nova's timestamps ("2026-11-03T10:15:02.000000", UTC without a zone) as aware datetimes."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", ""))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class FlavorInfo:
    id: str
    name: str
    vcpus: int
    #: RAM in MiB
    ram: int
    #: Root disk in GB
    disk: int


@dataclass(frozen=True)
class ImageInfo:
    id: str
    name: str
    #: Smallest root disk in GB the image boots from.
    min_disk: int
    status: str


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (ks_exceptions.ConnectFailure, ks_exceptions.ConnectTimeout, ks_exceptions.DiscoveryFailure,
            ks_exceptions.RetriableConnectionFailure) as exc:
        raise CloudUnavailable(f"OpenStack did not answer: {type(exc).__name__}") from exc
    except os_exceptions.HttpException as exc:
        status = getattr(exc, "status_code", None)
        detail = (getattr(exc, "details", None) or str(exc)).strip()
        if status is None or status >= 500:
            raise CloudUnavailable(f"OpenStack error {status}: {detail}") from exc
        raise CloudRefused(detail, status) from exc
    except os_exceptions.SDKException as exc:
        raise CloudUnavailable(f"OpenStack client error: {exc}") from exc
    except ks_exceptions.ClientException as exc:
        raise CloudUnavailable(f"OpenStack authentication error: {exc}") from exc


def _server_info(server: Any) -> ServerInfo:
    fixed_ip = None
    for addresses in (server.addresses or {}).values():
        for address in addresses:
            if address.get("OS-EXT-IPS:type", "fixed") == "fixed":
                fixed_ip = address.get("addr")
                break
    fault = server.fault.get("message") if isinstance(server.fault, dict) else None
    flavor = server.flavor or {}
    return ServerInfo(
        id=server.id, name=server.name, status=server.status or "UNKNOWN", project_id=server.project_id,
        flavor_name=flavor.get("original_name") or flavor.get("name"),
        availability_zone=server.availability_zone, fixed_ip=fixed_ip, fault=fault,
        metadata=dict(server.metadata or {}), task_state=server.task_state)


class OpenStackCloud:
    """Read access to one cloud from clouds.yaml, as the portal's service account."""

    #: Flavors, images and networks change rarely; looking them up on every order costs
    #: round trips a person waits for, so answers are kept this long (seconds).
    CATALOG_TTL_S = 120.0

    def __init__(self, clouds_yaml: Path, cloud_name: str) -> None:
        self.clouds_yaml = Path(clouds_yaml)
        self.cloud_name = cloud_name
        self._local = threading.local()
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()

    def _cached(self, kind: str, name: str, load: Callable[[], T]) -> T:
        key = (kind, name)
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.CATALOG_TTL_S:
                return hit[1]
        value = load()
        if value is not None:  # misses are not kept: a flavor added a moment ago should be found
            with self._cache_lock:
                self._cache[key] = (now, value)
        return value

    @property
    def conn(self) -> Any:
        """One connection per thread (openstacksdk connections are not shared safely)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.clouds_yaml.is_file():
                raise CloudRefused(f"{self.clouds_yaml}: clouds.yaml not found (set CLOUD_PORTAL_CLOUDS_YAML)")
            config = openstack.config.OpenStackConfig(config_files=[str(self.clouds_yaml)])
            try:
                region = config.get_one(cloud=self.cloud_name)
            except os_exceptions.ConfigException as exc:
                raise CloudRefused(f"{self.clouds_yaml}: {exc}") from None
            conn = openstack.connection.Connection(config=region)
            self._local.conn = conn
        return conn

    def _call(self, fn: Callable[[], T]) -> T:
        with _translated():
            return fn()

    # Servers -------------------------------------------------------------------
    def get_server(self, server_id: str) -> ServerInfo | None:
        """The server by id (any project), or None when Nova does not know it (deleted)."""
        try:
            return _server_info(self._call(lambda: self.conn.compute.get_server(server_id)))
        except CloudRefused as exc:
            if exc.status_code == 404:
                return None
            raise

    def list_servers(self, project_id: str | None = None) -> list[ServerInfo]:
        """Servers of one project (or of every project), with details."""
        query: dict[str, Any] = {"all_projects": True}
        if project_id:
            query["project_id"] = project_id
        return self._call(lambda: [_server_info(s) for s in self.conn.compute.servers(details=True, **query)])

    def find_server_by_request(self, project_id: str, request_uid: str) -> ServerInfo | None:
        """The server a portal request made, found by the request id in its metadata."""
        for server in self.list_servers(project_id):
            if server.metadata.get(REQUEST_ID_KEY) == request_tag(request_uid) and server.status != "DELETED":
                return server
        return None

    def wait_for_status(self, server_id: str, wanted: set[str], *, timeout_s: float,
                        interval_s: float = 0.1) -> ServerInfo:
        """Poll until the server reaches one of ``wanted`` (or ERROR, or is gone).

        A short interval: each poll is one cheap GET, and seconds matter to the person waiting.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            server = self.get_server(server_id)
            if server is None:
                raise CloudRefused(f"server {server_id} disappeared while waiting for {sorted(wanted)}", 404)
            if server.status in wanted or server.status == "ERROR":
                return server
            if time.monotonic() > deadline:
                raise CloudUnavailable(f"server {server_id} still {server.status} after {timeout_s:.0f}s")
            time.sleep(interval_s)

    def wait_for_deleted(self, server_id: str, *, timeout_s: float, interval_s: float = 0.25) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            server = self.get_server(server_id)
            if server is None or server.status == "DELETED":
                return
            if server.status == "ERROR" and server.task_state is None and time.monotonic() > deadline:
                raise CloudRefused(f"server {server_id} could not be deleted: {server.fault or 'ERROR'}")
            if time.monotonic() > deadline:
                raise CloudUnavailable(f"server {server_id} still {server.status} after {timeout_s:.0f}s")
            time.sleep(interval_s)

    def server_usage(self, project_id: str, start: datetime, end: datetime) -> dict[str, ServerUsage]:
        """Nova's own account of each server's existence in [start, end) (os-simple-tenant-usage),
        deleted servers included: hours, and when it started and ended (UTC)."""
        def load() -> dict[str, ServerUsage]:
            usage = self.conn.compute.get_usage(project_id, start=start.replace(tzinfo=None),
                                                end=end.replace(tzinfo=None))
            out = {}
            for item in usage.server_usages or []:
                out[item["instance_id"]] = ServerUsage(
                    server_id=item["instance_id"], hours=Decimal(str(item.get("hours") or 0)),
                    started_at=_nova_time(item.get("started_at")), ended_at=_nova_time(item.get("ended_at")),
                    state=item.get("state") or "")
            return out
        return self._call(load)

    def console_url(self, server_id: str) -> str | None:
        """A browser console URL, or None when the cloud offers no console for it."""
        try:
            console = self._call(lambda: self.conn.compute.create_server_remote_console(
                server_id, protocol="vnc", type="novnc"))
        except CloudRefused:
            return None
        return getattr(console, "url", None)

    # Catalog --------------------------------------------------------------------
    def get_flavor(self, name: str) -> FlavorInfo | None:
        def load() -> FlavorInfo | None:
            flavor = self._call(lambda: self.conn.compute.find_flavor(name, ignore_missing=True))
            if flavor is None:
                return None
            return FlavorInfo(id=flavor.id, name=flavor.name, vcpus=flavor.vcpus, ram=flavor.ram, disk=flavor.disk)
        return self._cached("flavor", name, load)

    def list_flavors(self) -> list[FlavorInfo]:
        return self._call(lambda: [FlavorInfo(id=f.id, name=f.name, vcpus=f.vcpus, ram=f.ram, disk=f.disk)
                                   for f in self.conn.compute.flavors(details=True)])

    def get_image(self, name: str) -> ImageInfo | None:
        def load() -> ImageInfo | None:
            image = self._call(lambda: self.conn.image.find_image(name, ignore_missing=True))
            if image is None:
                return None
            return ImageInfo(id=image.id, name=image.name, min_disk=int(image.min_disk or 0), status=image.status)
        return self._cached("image", name, load)

    def network_id(self, name: str) -> str | None:
        def load() -> str | None:
            network = self._call(lambda: self.conn.network.find_network(name, ignore_missing=True))
            return network.id if network is not None else None
        return self._cached("network", name, load)

    def list_images(self) -> list[ImageInfo]:
        return self._call(lambda: [ImageInfo(id=i.id, name=i.name, min_disk=int(i.min_disk or 0), status=i.status)
                                   for i in self.conn.image.images()])

    def availability_zones(self) -> list[str]:
        return self._call(lambda: [z.name for z in self.conn.compute.availability_zones()
                                   if (z.state or {}).get("available", True)])

    # Projects and quotas ----------------------------------------------------------
    def find_project_id(self, name: str) -> str | None:
        def load() -> str | None:
            project = self._call(lambda: self.conn.identity.find_project(name, ignore_missing=True))
            return project.id if project is not None else None
        return self._cached("project", name, load)

    def default_security_group_id(self, project_id: str) -> str | None:
        """The project's own "default" security group (names are ambiguous to an admin)."""
        def load() -> str | None:
            groups = self._call(lambda: list(self.conn.network.security_groups(project_id=project_id,
                                                                                 name="default")))
            return groups[0].id if groups else None
        return self._cached("security_group", project_id, load)

    def compute_quotas(self, project_id: str) -> dict[str, int]:
        quota = self._call(lambda: self.conn.compute.get_quota_set(project_id))
        return {"instances": quota.instances, "cores": quota.cores, "ram": quota.ram}

    def compute_endpoint(self) -> str:
        return str(self._call(lambda: self.conn.compute.get_endpoint())).rstrip("/")

    def service_user(self) -> str:
        return str(self.conn.config.auth.get("username"))

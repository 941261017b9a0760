"""The cloud handle: one per app, built in ``create_app`` like ``db``.

Domain services ask ``cloud.context()`` for the configured :class:`CloudContext` (openstacksdk
reads plus how to run playbooks) instead of building one from the settings themselves.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from cloud_portal.adapters.ansible import ExtraValue, PlaybookEvent, PlaybookResult, run_playbook
from cloud_portal.adapters.openstack import OpenStackCloud
from cloud_portal.errors import ProvisioningFailed

_EXTENSION_KEY = "cloud_portal.cloud"


@dataclass(frozen=True)
class CloudContext:
    """Where and how the portal reaches the cloud: reads through ``cloud``, changes through playbooks."""

    cloud: OpenStackCloud
    clouds_yaml: Path
    cloud_name: str
    network: str
    runs_dir: Path
    provision_timeout_s: float
    action_timeout_s: float
    job_lease_s: float

    @classmethod
    def configured(cls, settings: Mapping[str, Any], instance_path: str) -> CloudContext | None:
        """The context when a cloud is configured (CLOUDS_YAML set), else None (e.g. unit tests)."""
        return cls.from_settings(settings, instance_path) if settings["CLOUDS_YAML"] else None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], instance_path: str) -> CloudContext:
        """A context from the app settings (no network: the SDK connects on first use)."""
        clouds_yaml = Path(settings["CLOUDS_YAML"] or Path(instance_path) / "clouds.yaml")
        return cls(cloud=_cloud_for(clouds_yaml, settings["CLOUD_NAME"]), clouds_yaml=clouds_yaml,
                   cloud_name=settings["CLOUD_NAME"], network=settings["CLOUD_NETWORK"],
                   runs_dir=Path(instance_path) / "runs",
                   provision_timeout_s=float(settings["PROVISION_TIMEOUT_SECONDS"]),
                   action_timeout_s=float(settings["ACTION_TIMEOUT_SECONDS"]),
                   job_lease_s=float(settings["JOB_LEASE_SECONDS"]))

    def run(self, playbook: str, variables: Mapping[str, ExtraValue], *, job_id: str, timeout_s: float,
            on_event: Callable[[PlaybookEvent], None] | None = None) -> PlaybookResult:
        """Run one of the project's playbooks against this cloud (see adapters.ansible.run_playbook)."""
        return run_playbook(playbook, variables, job_id=job_id, data_root=self.runs_dir,
                            clouds_yaml=self.clouds_yaml, cloud_name=self.cloud_name, timeout_s=timeout_s,
                            on_event=on_event)


# One OpenStackCloud per clouds.yaml and cloud name, so its catalog cache and per-thread
# connections are shared by every app built in the process (tests build many).
_clouds: dict[tuple[Path, str], OpenStackCloud] = {}


def _cloud_for(clouds_yaml: Path, name: str) -> OpenStackCloud:
    key = (clouds_yaml, name)
    if key not in _clouds:
        _clouds[key] = OpenStackCloud(clouds_yaml, name)
    return _clouds[key]


class CloudHandle:
    """Flask extension holding the app's CloudContext (None when no CLOUDS_YAML is configured)."""

    def init_app(self, app: Flask) -> None:
        app.extensions[_EXTENSION_KEY] = CloudContext.configured(app.config, app.instance_path)

    def context(self) -> CloudContext | None:
        """The current app's cloud, or None when none is configured (unit tests, try-outs)."""
        return current_app.extensions.get(_EXTENSION_KEY)

    def required(self) -> CloudContext:
        """The current app's cloud; ProvisioningFailed saying what to set when there is none."""
        ctx = self.context()
        if ctx is None:
            raise ProvisioningFailed("No cloud is configured: set CLOUD_PORTAL_CLOUDS_YAML to a clouds.yaml.")
        return ctx


cloud = CloudHandle()

"""What a failed or abandoned request leaves behind: its quota hold and any half-made server."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from cloud_portal.accounts.models import User
from cloud_portal.adapters.cloud import CloudContext
from cloud_portal.adapters.openstack import CloudError
from cloud_portal.provisioning import models as m
from cloud_portal.quotas import service as quotas
from cloud_portal.tenants.cloud_sync import project_id, project_name

log = logging.getLogger(__name__)


def release_request_quota(request: m.ServerRequest, reason: str, actor: User | None) -> None:
    """Give back what the request held (rejected, cancelled, failed). The caller commits."""
    if request.reservation_id is not None:
        quotas.release(request.reservation_id, reason, actor)


@dataclass(frozen=True)
class LeftoverCheck:
    #: False when the cloud could not be asked (reconciliation retries later).
    checked: bool
    #: For the job's technical detail: what was found and done.
    note: str


def remove_half_made(request: m.ServerRequest, ctx: CloudContext) -> LeftoverCheck:
    """Delete any server a failed request left behind (found by the request uid in its metadata)."""
    try:
        project = project_id(ctx, request.tenant)
        if project is None:
            return LeftoverCheck(True, "")
        leftover = ctx.cloud.find_server_by_request(project, request.uid)
        if leftover is None:
            return LeftoverCheck(True, "")
        result = ctx.run("server_action.yml", {"project_name": project_name(request.tenant),
                                               "server_id": leftover.id, "action": "delete"},
                         job_id=f"cleanup-{request.id}-{uuid.uuid4().hex[:8]}", timeout_s=ctx.action_timeout_s)
        return LeftoverCheck(True, f"\n\nleftover server {leftover.id} deleted: {result.status}")
    except CloudError as exc:
        log.warning("leftover check of request %s failed: %s", request.id, exc)
        return LeftoverCheck(False, f"\n\nleftover check failed ({exc}); reconciliation will remove it")

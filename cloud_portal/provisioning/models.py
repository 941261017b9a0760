"""Requests for servers and desktops, the servers themselves, and the jobs that make them."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud_portal.extensions import db
from cloud_portal.timeutil import UTCDateTime, utcnow

if TYPE_CHECKING:
    from cloud_portal.accounts.models import User
    from cloud_portal.tenants.models import Tenant

from cloud_portal.catalog.offers import KIND_DESKTOP, KIND_VM  # noqa: F401  (re-exported for callers)

# Request states (DESIGN.md): pending_approval → approved → provisioning → active,
# or rejected, cancelled, failed.
PENDING_APPROVAL = "pending_approval"
APPROVED = "approved"
PROVISIONING = "provisioning"
ACTIVE = "active"
REJECTED = "rejected"
CANCELLED = "cancelled"
FAILED = "failed"
OPEN_REQUEST_STATES = (PENDING_APPROVAL, APPROVED, PROVISIONING)
END_REQUEST_STATES = (ACTIVE, REJECTED, CANCELLED, FAILED)


class ServerRequest(db.Model):  # type: ignore[name-defined]
    """A person's order for one VM or desktop; the sizes are a snapshot of the catalog entry."""

    __tablename__ = "server_requests"
    __table_args__ = (Index("ix_server_requests_tenant_state", "tenant_id", "state", "created_at", "id"),
                      # The request lists and approvals, newest first (seek pages read these in order).
                      Index("ix_server_requests_state_created", "state", "created_at", "id"),
                      Index("ix_server_requests_created", "created_at", "id"),
                      Index("ix_server_requests_tenant_created", "tenant_id", "created_at", "id"),
                      Index("ix_server_requests_requester_created", "requester_id", "created_at", "id"),
                      Index("ix_server_requests_owner_created", "owner_id", "created_at", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Globally unique id put in the server's metadata, so a retried create finds its server
    #: (row ids repeat across databases that share a cloud; these never do).
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: uuid.uuid4().hex)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: The person the server is for: the requester, or someone of the tenant a tenant admin ordered
    #: it for (a desktop for a named member of staff). Their per-person quota holds it, they own
    #: the server and pay for it.
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: "vm" or "desktop"
    kind: Mapped[str] = mapped_column(String(16))
    #: Host name (RFC 1123 label), validated before anything else.
    name: Mapped[str] = mapped_column(String(63))
    #: Catalog key: a VM size or a desktop template.
    catalog_key: Mapped[str] = mapped_column(String(40))
    image_key: Mapped[str] = mapped_column(String(40))
    data_hall: Mapped[str] = mapped_column(String(40))
    flavor: Mapped[str] = mapped_column(String(80))
    vcpus: Mapped[int] = mapped_column(Integer)
    #: RAM in MiB
    ram_mib: Mapped[int] = mapped_column(Integer)
    #: Root disk in GB
    disk_gb: Mapped[int] = mapped_column(Integer)
    #: Estimated cost a month in GBP when submitted.
    monthly_estimate: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    state: Mapped[str] = mapped_column(String(20), index=True)
    #: Why it was rejected or failed, in plain words (shown to the requester).
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("quota_reservations.id"), nullable=True)
    #: When the server is to be stopped and, after the grace period, deleted (None: no end).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="joined")
    requester: Mapped[User] = relationship(foreign_keys=[requester_id], lazy="joined")
    owner: Mapped[User] = relationship(foreign_keys=[owner_id], lazy="joined")
    server: Mapped[Server | None] = relationship(back_populates="request", uselist=False)

    @property
    def ordered_for_someone_else(self) -> bool:
        return self.owner_id != self.requester_id

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_REQUEST_STATES

    def can_view(self, user: User) -> bool:
        """The requester, the person it is for, the tenant's admins and platform admins see a request."""
        return (self.requester_id == user.id or self.owner_id == user.id or user.is_platform_admin
                or (user.is_tenant_admin and self.tenant_id == user.tenant_id))

    def can_decide(self, user: User) -> bool:
        """Approve or reject: an admin of the request's tenant, or a platform admin."""
        return user.is_platform_admin or (user.is_tenant_admin and user.tenant_id == self.tenant_id)

    def can_cancel(self, user: User) -> bool:
        """Withdraw or clean up: the requester, or an admin who may see it."""
        return self.can_view(user) and (self.requester_id == user.id or user.is_tenant_admin
                                        or user.is_platform_admin)


# Server states in the portal mirror Nova's, plus our own for work in flight.
SERVER_BUILDING = "BUILD"
SERVER_ACTIVE = "ACTIVE"
SERVER_SHUTOFF = "SHUTOFF"
SERVER_ERROR = "ERROR"
SERVER_DELETED = "DELETED"
#: Actions a person may ask for, by the status they need.
ACTIONS = ("start", "stop", "reboot", "resize", "delete")


class Server(db.Model):  # type: ignore[name-defined]
    """A VM or desktop as the portal knows it (kept fresh by jobs and reconciliation)."""

    __tablename__ = "servers"
    __table_args__ = (Index("ix_servers_owner_status", "owner_id", "status"),
                      # Every sort the server lists offer, for all servers and for one tenant's
                      # (seek pages read these in order; the id makes each key unique).
                      Index("ix_servers_name", "name", "id"),
                      Index("ix_servers_created", "created_at", "id"),
                      Index("ix_servers_status", "status", "id"),
                      Index("ix_servers_vcpus", "vcpus", "id"),
                      Index("ix_servers_tenant_name", "tenant_id", "name", "id"),
                      Index("ix_servers_tenant_created", "tenant_id", "created_at", "id"),
                      Index("ix_servers_tenant_status", "tenant_id", "status", "id"),
                      Index("ix_servers_tenant_vcpus", "tenant_id", "vcpus", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("server_requests.id"), unique=True, nullable=True)
    #: Nova server id.
    openstack_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(63))
    #: Nova status (ACTIVE, SHUTOFF, ERROR, ...) or DELETED once gone.
    status: Mapped[str] = mapped_column(String(20))
    #: Action in progress (start/stop/reboot/resize/delete) or None.
    task: Mapped[str | None] = mapped_column(String(20), nullable=True)
    flavor: Mapped[str] = mapped_column(String(80))
    vcpus: Mapped[int] = mapped_column(Integer)
    #: RAM in MiB
    ram_mib: Mapped[int] = mapped_column(Integer)
    #: Root disk in GB
    disk_gb: Mapped[int] = mapped_column(Integer)
    image_key: Mapped[str] = mapped_column(String(40))
    data_hall: Mapped[str] = mapped_column(String(40))
    fixed_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Last problem in plain words (failed action, fault), shown on the server page.
    problem: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Quota reservation that this server holds (consumed), released on deletion.
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("quota_reservations.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When reconciliation last saw it in OpenStack.
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: End of its lease: warned 7 and 1 days before, stopped then, deleted after the grace period.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    #: How far expiry has gone: None, "warned_7", "warned_1", "stopped" (reset by an extension).
    expiry_stage: Mapped[str | None] = mapped_column(String(12), nullable=True)

    owner: Mapped[User] = relationship(lazy="joined")
    tenant: Mapped[Tenant] = relationship(lazy="joined")
    request: Mapped[ServerRequest | None] = relationship(back_populates="server")

    def can_view(self, user: User) -> bool:
        if user.is_platform_admin:
            return True
        return user.tenant_id == self.tenant_id and (user.is_tenant_admin or user.id == self.owner_id)

    def can_operate(self, user: User) -> bool:
        """Owners and their tenant admins (and platform admins) may start, stop, resize, delete."""
        return user.active and self.status != SERVER_DELETED and self.can_view(user) and not user.is_finance

    def allowed_actions(self) -> tuple[str, ...]:
        if self.task is not None or self.status == SERVER_DELETED:
            return ()
        if self.status == SERVER_ACTIVE:
            return ("stop", "reboot", "resize", "delete")
        if self.status == SERVER_SHUTOFF:
            return ("start", "resize", "delete")
        return ("delete",)


# Jobs ----------------------------------------------------------------------------
#: Job kinds: make a request's server; act on a server (start, stop, reboot, resize, delete).
JOB_PROVISION = "provision"
JOB_ACTION = "action"
JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"


class Job(db.Model):  # type: ignore[name-defined]
    """One unit of work against the cloud (one playbook run, plus the waiting around it)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: JOB_PROVISION | JOB_ACTION
    kind: Mapped[str] = mapped_column(String(20))
    action: Mapped[str | None] = mapped_column(String(20), nullable=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True, index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("server_requests.id"), nullable=True, index=True)
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id"), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Plain-words failure (and the technical detail after a blank line, for admins).
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: A running job past this is failed by reconciliation (worker died or hung).
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Who asked when not a person: "schedule" (office hours) or "expiry"; the ledger's cause
    #: then reads e.g. "schedule:stop", which is how a schedule's savings are found.
    origin: Mapped[str | None] = mapped_column(String(20), nullable=True)

    steps: Mapped[list[JobStep]] = relationship(order_by="JobStep.seq", lazy="selectin",
                                                cascade="all, delete-orphan")


class JobStep(db.Model):  # type: ignore[name-defined]
    """A step of a job as the requester watches it: a playbook task, or our own wait."""

    __tablename__ = "job_steps"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(100), default="")
    #: started | ok | changed | failed | skipped | unreachable
    status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


# Schedules and expiry ----------------------------------------------------------------

class ServerSchedule(db.Model):  # type: ignore[name-defined]
    """A server's office hours (see :class:`cloud_portal.weekly.Weekly`) and the next change due.

    The worker carries out changes whose ``next_at`` has passed (stop or start through the action
    playbook); a busy server is tried again a few minutes later, up to ``MAX_SCHEDULE_RETRIES``.
    """

    __tablename__ = "server_schedules"

    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True)
    #: Days it applies, e.g. ["mon", "tue", "wed", "thu", "fri"].
    days: Mapped[list[str]] = mapped_column(JSON)
    #: Local wall-clock times "HH:MM" (None: that half is off) in ``timezone``.
    stop_at: Mapped[str | None] = mapped_column(String(5), nullable=True)
    start_at: Mapped[str | None] = mapped_column(String(5), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64))
    #: "stop" | "start": the next change, due at ``next_at`` (UTC); None when nothing is due.
    next_action: Mapped[str | None] = mapped_column(String(8), nullable=True)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    #: Tries of the change now due (a busy server is tried again).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: What happened last, in plain words (shown on the server page).
    last_note: Mapped[str | None] = mapped_column(String(300), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    server: Mapped[Server] = relationship()


# Reconciliation finding kinds.
FINDING_UNKNOWN_SERVER = "unknown_server"
FINDING_DELETED_OUTSIDE = "deleted_outside"
FINDING_JOB_TIMED_OUT = "job_timed_out"
FINDING_QUOTA_REFUSED = "quota_refused"


class ReconcileFinding(db.Model):  # type: ignore[name-defined]
    """Something reconciliation found that an admin should look at (unknown server, refusals)."""

    __tablename__ = "reconcile_findings"
    __table_args__ = (UniqueConstraint("kind", "openstack_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True, index=True)
    #: unknown_server | deleted_outside | stopped_outside | job_timed_out | quota_refused
    kind: Mapped[str] = mapped_column(String(30))
    openstack_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReconcileRun(db.Model):  # type: ignore[name-defined]
    """A completed reconciliation (month close waits for one after the month's end)."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WorkerLock(db.Model):  # type: ignore[name-defined]
    """A named lease one worker holds at a time across every machine (e.g. "reconcile"): taken by
    a conditional UPDATE when free or expired, so a worker that died does not hold it for ever."""

    __tablename__ = "worker_locks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

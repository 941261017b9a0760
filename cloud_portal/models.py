"""Imports every model module so SQLAlchemy's metadata (and Alembic) sees all tables."""
from cloud_portal.accounts.models import ApiToken, SignInAttempt, User  # noqa: F401
from cloud_portal.audit.models import AuditEvent  # noqa: F401
from cloud_portal.catalog.models import DesktopTemplate, Image, Rate, VmSize  # noqa: F401
from cloud_portal.provisioning.models import Job, JobStep, ReconcileFinding, Server, ServerRequest  # noqa: F401
from cloud_portal.quotas.models import QuotaIncreaseRequest, QuotaLimit, QuotaReservation  # noqa: F401
from cloud_portal.tenants.models import DataHall, Tenant  # noqa: F401

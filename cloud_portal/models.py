"""Imports every model module so SQLAlchemy's metadata (and Alembic) sees all tables."""
from cloud_portal.accounts.models import ApiToken, SignInAttempt, User  # noqa: F401
from cloud_portal.audit.models import AuditEvent  # noqa: F401
from cloud_portal.billing.models import BillingMonth, BudgetAlert, StatementLine, UsageInterval  # noqa: F401
from cloud_portal.catalog.models import DesktopTemplate, Image, Rate, RateVersion, VmSize  # noqa: F401
from cloud_portal.provisioning.models import (  # noqa: F401
    Job,
    JobStep,
    ReconcileFinding,
    ReconcileRun,
    Server,
    ServerRequest,
)
from cloud_portal.quotas.models import QuotaIncreaseRequest, QuotaLimit, QuotaReservation  # noqa: F401
from cloud_portal.tenants.models import DataHall, Tenant  # noqa: F401

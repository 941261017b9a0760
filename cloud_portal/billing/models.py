"""The usage ledger, closed months and their statement lines (rate versions are the catalog's)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from cloud_portal.extensions import db
from cloud_portal.timeutil import UTCDateTime, epoch_micros, utcnow

RUNNING = "running"
STOPPED = "stopped"


class UsageInterval(db.Model):  # type: ignore[name-defined]
    """A stretch of time in which a server's billed facts stayed the same.

    Opened and closed only by the server-state transition (billing.ledger); at most one open
    interval (``ended_at`` NULL) per server, which a partial unique index enforces. Nothing
    is updated in place except closing the open interval.
    """

    __tablename__ = "usage_intervals"
    __table_args__ = (
        Index("uq_usage_intervals_open_per_server", "server_id", unique=True,
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
        Index("ix_usage_intervals_owner_started", "owner_id", "started_at"),
        Index("ix_usage_intervals_span", "started_at", "ended_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    #: "vm" or "desktop"
    kind: Mapped[str] = mapped_column(String(16))
    #: Catalog key of a desktop template (its monthly price), else the VM size's flavor.
    catalog_key: Mapped[str] = mapped_column(String(80))
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mib: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    #: running (compute and disk are billed) or stopped (disk only; also ERROR)
    state: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The same two instants as microseconds since 1970 (kept in step by the validator below):
    #: the charge sums read these, because both databases add up integers exactly and fast,
    #: where parsing every timestamp of a month would cost more than the rest of the close.
    started_us: Mapped[int] = mapped_column(BigInteger)
    ended_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Why the interval began (created, stop, start, resize, transfer, found by reconciliation).
    cause: Mapped[str] = mapped_column(String(80))

    @validates("started_at", "ended_at")
    def _keep_micros_in_step(self, key: str, value: datetime | None) -> datetime | None:
        setattr(self, key.replace("_at", "_us"), None if value is None else epoch_micros(value))
        return value


class BillingMonth(db.Model):  # type: ignore[name-defined]
    """A closed month: its statement lines are final."""

    __tablename__ = "billing_months"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-11"
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(254))


class StatementLine(db.Model):  # type: ignore[name-defined]
    """One charge of a closed month: person × server × component × rate version, rounded once.

    The database refuses UPDATE on this table (a trigger, on SQLite and PostgreSQL): a change
    learned later becomes an adjustment line in the first open month (``adjusts_line_id``).
    """

    __tablename__ = "statement_lines"
    __table_args__ = (Index("ix_statement_lines_month_tenant", "month", "tenant_id"),
                      Index("ix_statement_lines_month_owner", "month", "owner_id"),
                      # Only adjustments (few) are indexed: a close writes the rest without touching it.
                      Index("ix_statement_lines_adjusts_month", "adjusts_month",
                            sqlite_where=text("adjusts_month IS NOT NULL"),
                            postgresql_where=text("adjusts_month IS NOT NULL")))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Plain values, not foreign keys: a final record, written only by closing its month (right
    # after the month's row) from ledger rows whose own keys guarantee these exist; per-row key
    # checks tripled the cost of closing a month.
    month: Mapped[str] = mapped_column(String(7))
    tenant_id: Mapped[int] = mapped_column(Integer)
    cost_centre: Mapped[str] = mapped_column(String(40))
    owner_id: Mapped[int] = mapped_column(Integer)
    server_id: Mapped[int] = mapped_column(Integer)
    #: vcpu | ram | disk | desktop
    component: Mapped[str] = mapped_column(String(16))
    rate_key: Mapped[str] = mapped_column(String(80))
    rate_from: Mapped[date] = mapped_column(Date)
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    #: vCPU-hours | GB-hours | GB-months | desktop-months
    unit: Mapped[str] = mapped_column(String(20))
    rate: Mapped[Decimal] = mapped_column(Numeric(12, 5))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    #: For an adjustment: the closed month it corrects, and the closed line (when there was one).
    adjusts_month: Mapped[str | None] = mapped_column(String(7), nullable=True)
    adjusts_line_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BudgetAlert(db.Model):  # type: ignore[name-defined]
    """A budget e-mail sent: once per tenant, month and level (80 or 100 per cent)."""

    __tablename__ = "budget_alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "month", "level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    month: Mapped[str] = mapped_column(String(7))
    level: Mapped[int] = mapped_column(Integer)
    forecast: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

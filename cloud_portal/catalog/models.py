"""What can be ordered (VM sizes, images, desktop templates) and what it costs (the rate card)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Boolean, Date, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud_portal.extensions import db


class VmSize(db.Model):  # type: ignore[name-defined]
    __tablename__ = "vm_sizes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name_en: Mapped[str] = mapped_column(String(120))
    name_cy: Mapped[str] = mapped_column(String(120))
    #: OpenStack flavor name.
    flavor: Mapped[str] = mapped_column(String(80))
    vcpus: Mapped[int] = mapped_column(Integer)
    #: RAM in MiB.
    ram_mib: Mapped[int] = mapped_column(Integer)
    #: Root disk in GB.
    disk_gb: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def display_name(self, locale: str) -> str:
        return self.name_cy if locale == "cy" else self.name_en


class Image(db.Model):  # type: ignore[name-defined]
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    #: The Welsh name (tenants.yaml ``name_cy``); None where the name is the same in both languages.
    name_cy: Mapped[str | None] = mapped_column(String(120), nullable=True)
    #: Glance image name.
    os_image: Mapped[str] = mapped_column(String(120))
    #: Smallest root disk the image fits on, in GB.
    min_disk_gb: Mapped[int] = mapped_column(Integer)
    #: "vm" or "desktop".
    kind: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def display_name(self, locale: str) -> str:
        return (self.name_cy or self.name) if locale == "cy" else self.name


class DesktopTemplate(db.Model):  # type: ignore[name-defined]
    __tablename__ = "desktop_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name_en: Mapped[str] = mapped_column(String(120))
    name_cy: Mapped[str] = mapped_column(String(120))
    flavor: Mapped[str] = mapped_column(String(80))
    vcpus: Mapped[int] = mapped_column(Integer)
    #: RAM in MiB.
    ram_mib: Mapped[int] = mapped_column(Integer)
    #: Root disk in GB.
    disk_gb: Mapped[int] = mapped_column(Integer)
    #: Image key (catalog images of kind "desktop").
    image_key: Mapped[str] = mapped_column(String(40))
    #: Flat price per user per month, GBP.
    monthly_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    def display_name(self, locale: str) -> str:
        return self.name_cy if locale == "cy" else self.name_en


class Rate(db.Model):  # type: ignore[name-defined]
    __tablename__ = "rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: vcpu_hour, ram_gb_hour or disk_gb_month.
    key: Mapped[str] = mapped_column(String(40), unique=True)
    #: Price per unit in GBP (fractions of a penny allowed; statements round once per line).
    price: Mapped[Decimal] = mapped_column(Numeric(12, 5))


class RateVersion(db.Model):  # type: ignore[name-defined]
    """One price from a date on: vcpu_hour, ram_gb_hour, disk_gb_month, or desktop:<template>."""

    __tablename__ = "rate_versions"
    __table_args__ = (UniqueConstraint("key", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(80))
    #: First day the price applies (a calendar date in BILLING_TIMEZONE).
    effective_from: Mapped[date] = mapped_column(Date)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 5))

"""People who sign in, their roles, and sign-in attempts (for throttling)."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from cloud_portal.extensions import db
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import UTCDateTime, utcnow

ROLE_MEMBER = "member"
ROLE_TENANT_ADMIN = "tenant_admin"
ROLE_PLATFORM_ADMIN = "platform_admin"
ROLE_FINANCE = "finance"
#: Roles a member tenant's users may hold, and roles of the platform's own staff.
TENANT_ROLES = (ROLE_MEMBER, ROLE_TENANT_ADMIN)
PLATFORM_ROLES = (ROLE_PLATFORM_ADMIN, ROLE_FINANCE)
ALL_ROLES = TENANT_ROLES + PLATFORM_ROLES


TOKEN_SCOPE_READ = "read"  # noqa: S105 - a scope name, not a secret
TOKEN_SCOPE_FULL = "full"  # noqa: S105 - a scope name, not a secret
TOKEN_SCOPES = (TOKEN_SCOPE_READ, TOKEN_SCOPE_FULL)


def new_session_token() -> str:
    return secrets.token_urlsafe(24)


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"
    # A tenant's people by address (the people page's seek pages; everyone's use the unique e-mail).
    __table_args__ = (Index("ix_users_tenant_email", "tenant_id", "email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Stored lower-case; the sign-in name.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Put in the session cookie instead of the id; rotated on disable, role or password
    #: change, so every existing session of the user stops working at once.
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The language the person last chose on the portal ("en" or "cy"); e-mails use it. None:
    #: not known, so e-mails to them are bilingual, Welsh first.
    language: Mapped[str | None] = mapped_column(String(5), nullable=True)
    #: Two-factor sign-in (TOTP): the shared secret (set at enrolment, kept on the server), when
    #: it was confirmed (None: not in use), the last time-step used (a code works once) and the
    #: SHA-256 of each unused recovery code.
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    recovery_code_hashes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, default=list)

    tenant: Mapped[Tenant] = relationship(lazy="joined")

    # Flask-Login protocol -------------------------------------------------
    @property
    def is_active(self) -> bool:
        return bool(self.active)

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return self.session_token

    # Passwords -------------------------------------------------------------
    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)
        self.session_token = new_session_token()

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    # Permission predicates, used by views, API and templates alike -------
    @property
    def is_platform_admin(self) -> bool:
        return self.role == ROLE_PLATFORM_ADMIN

    @property
    def is_finance(self) -> bool:
        return self.role == ROLE_FINANCE

    @property
    def is_tenant_admin(self) -> bool:
        return self.role == ROLE_TENANT_ADMIN

    def can_manage_user(self, other: User) -> bool:
        """Platform admins manage everyone; tenant admins manage their own tenant's people."""
        if not self.active:
            return False
        if self.is_platform_admin:
            return True
        return self.is_tenant_admin and other.tenant_id == self.tenant_id

    def can_manage_tenant(self, tenant: Tenant) -> bool:
        if self.is_platform_admin:
            return True
        return self.is_tenant_admin and tenant.id == self.tenant_id

    def assignable_roles(self, tenant: Tenant) -> tuple[str, ...]:
        """Roles this user may give to someone in ``tenant``."""
        if not self.can_manage_tenant(tenant):
            return ()
        return PLATFORM_ROLES if tenant.is_platform else TENANT_ROLES

    @property
    def can_edit_quotas(self) -> bool:
        """Change any tenant's limits and decide quota-increase requests."""
        return self.active and self.is_platform_admin

    @property
    def can_ask_quota_increase(self) -> bool:
        """Members and tenant admins of a member tenant may ask for more quota."""
        return self.active and self.role in TENANT_ROLES

    @property
    def can_view_audit(self) -> bool:
        return self.is_platform_admin or self.is_tenant_admin

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"


class SignInAttempt(db.Model):  # type: ignore[name-defined]
    __tablename__ = "sign_in_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    #: Client address as seen by the app (behind a proxy, configure ProxyFix).
    remote_addr: Mapped[str] = mapped_column(String(64), index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A personal token for the REST API; only its SHA-256 is stored (shown once when made)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    #: hex SHA-256 of the token (tokens are random, so a plain hash is enough).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: First characters, to tell tokens apart in lists.
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: After this the token is refused (default 90 days from its making).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: "read": GET only (a state-changing call gets 403); "full": everything the person may do.
    scope: Mapped[str] = mapped_column(String(8), default=TOKEN_SCOPE_FULL, server_default=TOKEN_SCOPE_FULL)
    #: When the a-week-before-expiry e-mail went (sent once).
    expiry_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")

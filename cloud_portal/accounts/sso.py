"""Single sign-on with each tenant's own OpenID Connect provider (settings from tenants.yaml).

Home-realm discovery maps an e-mail domain to the tenant whose provider signs its people in.
The first sign-in creates the person in that tenant (just in time) with the role the claims
map to; later sign-ins update their name and, unless the tenant manages roles in the portal,
their role, audit-logged. Every refusal is a :class:`SignInProblem` whose ``reason`` the sign-in
page turns into a sentence the person can act on.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from cloud_portal.accounts.models import ROLE_MEMBER, ROLE_TENANT_ADMIN, TENANT_ROLES, User
from cloud_portal.accounts.service import generate_password, normalise_email
from cloud_portal.adapters import oidc
from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, PortalError
from cloud_portal.extensions import db
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)

#: Higher wins when a person's groups map to more than one role.
_ROLE_RANK = {ROLE_MEMBER: 0, ROLE_TENANT_ADMIN: 1}


class SignInProblem(PortalError):
    """A single sign-on refused or impossible; ``reason`` names which (see the sign-in page)."""

    def __init__(self, reason: str, detail: str = "", tenant: Tenant | None = None) -> None:
        super().__init__(f"single sign-on: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail
        self.tenant = tenant


def email_domain(email: str) -> str:
    return (email or "").strip().lower().rpartition("@")[2]


def tenant_for_email(email: str) -> Tenant | None:
    """The active tenant whose provider signs in people of this e-mail's domain, if any."""
    domain = email_domain(email)
    if not domain:
        return None
    for tenant in db.session.scalars(select(Tenant).where(Tenant.active.is_(True), Tenant.sso.is_not(None))):
        if domain in (tenant.sso or {}).get("email_domains", []):
            return tenant
    return None


def active_sso_tenant(slug: str) -> Tenant:
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug, Tenant.active.is_(True)))
    if tenant is None or not tenant.sso:
        raise SignInProblem("not_configured", f"tenant {slug!r} has no provider")
    return tenant


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def provider_origins() -> list[str]:
    """The origins of every active tenant's provider (the sign-in form may lead to any)."""
    return sorted({_origin((t.sso or {})["issuer"]) for t in db.session.scalars(
        select(Tenant).where(Tenant.active.is_(True), Tenant.sso.is_not(None))) if (t.sso or {}).get("issuer")})


def provider_origin(tenant_slug: str) -> str | None:
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == tenant_slug))
    return _origin(tenant.sso["issuer"]) if tenant is not None and tenant.sso else None


def passwords_refused_for(email: str) -> bool:
    """True when the e-mail's tenant signs in only through its provider (and the person is not
    one of the platform's own staff, whose break-glass passwords always work)."""
    user = db.session.scalar(select(User).where(User.email == (email or "").strip().lower()))
    if user is not None and user.tenant.is_platform:
        return False
    tenant = user.tenant if user is not None else tenant_for_email(email)
    return tenant is not None and not tenant.password_sign_in


def _provider(tenant: Tenant) -> oidc.Provider:
    settings: dict[str, Any] = tenant.sso or {}
    secret: str | None = None
    if settings.get("client_secret_env"):
        secret = os.environ.get(settings["client_secret_env"])
    elif settings.get("client_secret_file"):
        try:
            secret = Path(settings["client_secret_file"]).read_text(encoding="utf-8").strip()
        except OSError:
            secret = None
    if not secret:
        where = settings.get("client_secret_env") or settings.get("client_secret_file")
        log.error("single sign-on for %s: no client secret in %s", tenant.slug, where)
        raise SignInProblem("not_configured", f"no client secret in {where}", tenant)
    return oidc.Provider(tenant.slug, settings["issuer"], settings["client_id"], secret)


def start(tenant: Tenant, redirect_uri: str, login_hint: str | None = None) -> str:
    """The provider URL to send the person to."""
    try:
        return oidc.authorization_url(_provider(tenant), redirect_uri, login_hint)
    except oidc.ProviderUnavailable as exc:
        log.warning("single sign-on for %s: provider not answering: %s", tenant.slug, exc)
        raise SignInProblem("unavailable", str(exc), tenant) from exc


def finish(tenant: Tenant) -> tuple[User, str]:
    """Complete the sign-in the current request returns from: (the person, the raw ID token).
    Creates or updates the person; the caller commits."""
    try:
        claims, id_token = oidc.complete_sign_in(_provider(tenant))
    except oidc.ProviderUnavailable as exc:
        log.warning("single sign-on for %s: provider not answering: %s", tenant.slug, exc)
        raise SignInProblem("unavailable", str(exc), tenant) from exc
    except oidc.SignInRefused as exc:
        log.warning("single sign-on for %s refused: %s", tenant.slug, exc)
        raise SignInProblem(exc.reason, exc.detail, tenant) from exc
    return account_from_claims(tenant, claims), id_token


def account_from_claims(tenant: Tenant, claims: dict[str, Any]) -> User:
    """The person the verified claims name, created (first sign-in) or brought up to date."""
    try:
        email = normalise_email(str(claims.get("email") or ""))
    except InvalidInput:
        raise SignInProblem("no_email", "the ID token carries no usable e-mail address", tenant) from None
    if claims.get("email_verified") is False:
        raise SignInProblem("unverified_email", email, tenant)
    domain = email_domain(email)
    if domain not in (tenant.sso or {}).get("email_domains", []):
        owner = tenant_for_email(email)
        raise SignInProblem("other_tenant_domain" if owner is not None else "unknown_domain", email, tenant)
    name = str(claims.get("name") or email.partition("@")[0])[:120]
    role = role_from_claims(tenant, claims)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, display_name=name, role=role, tenant=tenant, active=True)
        user.set_password(generate_password())  # never told to anyone: this person signs in through SSO
        db.session.add(user)
        db.session.flush()
        audit.record(None, "user.create", "user", user.email, tenant_id=tenant.id, actor_label="single sign-on",
                     after={"email": email, "role": role, "display_name": name,
                            "via": (tenant.sso or {}).get("issuer")})
    else:
        if user.tenant_id != tenant.id:
            raise SignInProblem("other_tenant_account", email, tenant)
        if not user.active:
            raise SignInProblem("disabled", email, tenant)
        changes: dict[str, tuple[str, str]] = {}
        if user.display_name != name:
            changes["display_name"] = (user.display_name, name)
            user.display_name = name
        managed_by_provider = (tenant.sso or {}).get("roles_managed_in", "provider") == "provider"
        if managed_by_provider and user.role != role and user.role in TENANT_ROLES:
            changes["role"] = (user.role, role)
            user.role = role
        if changes:
            audit.record(None, "user.update", "user", user.email, tenant_id=tenant.id, actor_label="single sign-on",
                         before={k: v[0] for k, v in changes.items()}, after={k: v[1] for k, v in changes.items()})
    user.last_sign_in_at = utcnow()
    return user


def role_from_claims(tenant: Tenant, claims: dict[str, Any]) -> str:
    """The role the tenant's mapping gives these claims (the highest one any group maps to)."""
    mapping = (tenant.sso or {}).get("roles", {})
    values = claims.get(mapping.get("claim", "groups"), [])
    if isinstance(values, str):
        values = [values]
    roles = [mapping.get("map", {}).get(str(v)) for v in values if isinstance(v, (str, int))]
    roles = [r for r in roles if r in TENANT_ROLES]
    default = mapping.get("default", ROLE_MEMBER)
    return max(roles + [default], key=lambda r: _ROLE_RANK.get(r, 0))


def logout_url(tenant_slug: str, id_token: str | None, after: str) -> str | None:
    """The provider's sign-out address that comes back to ``after``, when it offers one."""
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == tenant_slug))
    if tenant is None or not tenant.sso:
        return None
    try:
        return oidc.logout_url(_provider(tenant), id_token, after)
    except SignInProblem:
        return None


def verify_id_token(tenant: Tenant, id_token: str, nonce: str) -> dict[str, Any]:
    """Check an ID token as the callback does (for tests of each refusal and for operators)."""
    try:
        return oidc.verify_id_token(_provider(tenant), id_token, nonce)
    except oidc.ProviderUnavailable as exc:
        raise SignInProblem("unavailable", str(exc), tenant) from exc
    except oidc.SignInRefused as exc:
        raise SignInProblem(exc.reason, exc.detail, tenant) from exc

"""Accounts: sign-in with throttling, and adding, disabling and re-roling people."""
from __future__ import annotations

import functools
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from cloud_portal.accounts.models import (
    ALL_ROLES,
    PLATFORM_ROLES,
    TENANT_ROLES,
    TOKEN_SCOPE_FULL,
    TOKEN_SCOPES,
    ApiToken,
    SignInAttempt,
    User,
    new_session_token,
)
from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput, NotFound, NotPermitted, OrganisationInactive, SignInThrottled
from cloud_portal.extensions import db
from cloud_portal.i18n import LANGUAGES, _, current_language, for_recipient
from cloud_portal.paging import Listing
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)
MIN_PASSWORD_LENGTH = 12


def normalise_email(email: str) -> str:
    """Validate an e-mail address's syntax (no DNS look-up) and return it lower-cased."""
    try:
        return validate_email((email or "").strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(_("%(email)s is not a valid e-mail address: %(problem)s",
                             email=repr(email), problem=exc)) from None


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(_("The password must be at least %(length)s characters long.", length=MIN_PASSWORD_LENGTH))


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def _recent_failures(column, value: str, since) -> int:
    return db.session.scalar(select(func.count()).select_from(SignInAttempt).where(
        column == value, SignInAttempt.succeeded.is_(False), SignInAttempt.at >= since)) or 0


@functools.cache
def _dummy_hash() -> str:
    """A hash made the way real ones are (same method and cost), of a password nobody has."""
    return generate_password_hash(secrets.token_urlsafe(24))


def authenticate(email: str, password: str, remote_addr: str, *, max_failures: int,
                 window_seconds: int) -> User | None:
    """Return the user if the credentials are right and the account is active, else None.

    Raises SignInThrottled when ``max_failures`` failures for this e-mail (or four times as
    many from this address) happened within the window; the attempt is not even checked then,
    so a correct guess during the block does not help an attacker.  The caller commits.
    """
    email = (email or "").strip().lower()[:254]
    since = utcnow() - timedelta(seconds=window_seconds)
    if (_recent_failures(SignInAttempt.email, email, since) >= max_failures
            or _recent_failures(SignInAttempt.remote_addr, remote_addr, since) >= 4 * max_failures):
        minutes = max(1, window_seconds // 60)
        raise SignInThrottled(
            _("Too many failed sign-in attempts. Wait %(minutes)s minutes and try again, "
              "or ask your administrator to reset your password.", minutes=minutes),
            retry_after_seconds=window_seconds)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        # Hash the attempt anyway, so an address nobody has takes as long to refuse as a wrong
        # password (no telling which addresses have accounts from the time taken).
        check_password_hash(_dummy_hash(), password)
    ok = user is not None and user.active and user.check_password(password)
    db.session.add(SignInAttempt(email=email, remote_addr=remote_addr[:64], succeeded=ok))
    if not ok:
        log.info("failed sign-in for %s from %s", email, remote_addr)
        return None
    assert user is not None
    if not user.tenant.active:
        raise OrganisationInactive()
    user.last_sign_in_at = utcnow()
    return user


def recent_failures_for(email: str, since: datetime) -> int:
    """Failed sign-in attempts (passwords and second-factor codes) for ``email`` since ``since``."""
    return _recent_failures(SignInAttempt.email, email, since)


def note_failed_code(email: str, remote_addr: str) -> None:
    """A wrong second-factor code counts as a failed sign-in (throttled alike). The caller commits."""
    db.session.add(SignInAttempt(email=email, remote_addr=remote_addr[:64], succeeded=False))


def end_all_sessions(user: User) -> None:
    """Every session of ``user`` stops working (the cookie carries this token). The caller commits."""
    user.session_token = new_session_token()


def load_user_by_session_token(token: str) -> User | None:
    """The signed-in person, unless disabled or their organisation has left the portal."""
    return db.session.scalar(select(User).join(Tenant, Tenant.id == User.tenant_id).where(
        User.session_token == token, User.active.is_(True), Tenant.active.is_(True)))


def _check_role_for_tenant(role: str, tenant: Tenant) -> None:
    if role not in ALL_ROLES:
        raise InvalidInput(_("%(role)s is not a role; choose one of %(roles)s.", role=repr(role),
                             roles=", ".join(ALL_ROLES)))
    allowed = PLATFORM_ROLES if tenant.is_platform else TENANT_ROLES
    if role not in allowed:
        raise InvalidInput(_("Role %(role)s cannot be held in %(tenant)s; choose one of %(roles)s.",
                             role=repr(role), tenant=tenant.display_name(current_language()),
                             roles=", ".join(allowed)))


def add_user(actor: User | None, *, email: str, display_name: str, role: str, tenant: Tenant,
             password: str | None = None) -> tuple[User, str]:
    """Create an account; returns (user, password). ``actor`` None means the CLI/system.

    The caller commits.  A generated password is returned so it can be shown once.
    """
    if actor is not None and role not in actor.assignable_roles(tenant):
        raise NotPermitted(_("You may not add people with that role to that tenant."))
    _check_role_for_tenant(role, tenant)
    email = normalise_email(email)
    display_name = (display_name or "").strip()
    if not 1 <= len(display_name) <= 120:
        raise InvalidInput(_("The name must be between 1 and 120 characters."))
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise InvalidInput(_("An account for %(email)s already exists.", email=email))
    password = password or generate_password()
    check_password_strength(password)
    user = User(email=email, display_name=display_name, role=role, tenant_id=tenant.id, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.add", "user", email, tenant_id=tenant.id,
                 after={"role": role, "display_name": display_name})
    log.info("user %s added to %s as %s by %s", email, tenant.slug, role,
             actor.email if actor else "system")
    return user, password


def find_user_by_email(email: str) -> User | None:
    """The account with this e-mail (case and spaces ignored), or None."""
    return db.session.scalar(select(User).where(User.email == (email or "").strip().lower()))


def get_user_by_email(email: str) -> User:
    user = find_user_by_email(email)
    if user is None:
        raise NotFound(_("No account with e-mail %(email)s.", email=repr(email)))
    return user


def staff_member(tenant: Tenant, email: str | None, *, purpose: str = "hold servers") -> User:
    """The active person of ``tenant`` with this e-mail address, who may own servers; InvalidInput
    naming what to do otherwise (someone to order for, or to hand a server to). ``purpose``,
    "hold servers" or "own servers", words the refusal of a finance account."""
    wanted = (email or "").strip().lower()
    if not wanted:
        raise InvalidInput(_("Give the e-mail address of a person in the organisation."))
    person = db.session.scalar(select(User).where(User.email == wanted, User.tenant_id == tenant.id))
    if person is None:
        raise InvalidInput(_("No one with the address %(email)s belongs to %(tenant)s; add them on the people "
                             "page first.", email=wanted, tenant=tenant.display_name(current_language())))
    if not person.active:
        raise InvalidInput(_("%(email)s is disabled; enable them first.", email=person.email))
    if person.is_finance:
        if purpose == "own servers":
            raise InvalidInput(_("%(email)s has the finance role, which cannot own servers.", email=person.email))
        raise InvalidInput(_("%(email)s has the finance role, which cannot hold servers.", email=person.email))
    return person


def set_role(actor: User | None, user: User, role: str) -> None:
    """Change someone's role; their sessions end so the new rights apply at once."""
    if actor is not None:
        if not actor.can_manage_user(user) or role not in actor.assignable_roles(user.tenant):
            raise NotPermitted(_("You may not give that role to this person."))
        if actor.id == user.id:
            raise NotPermitted(_("You cannot change your own role; ask another administrator."))
    _check_role_for_tenant(role, user.tenant)
    if user.role == role:
        return
    audit.record(actor, "user.set_role", "user", user.email, tenant_id=user.tenant_id,
                 before={"role": user.role}, after={"role": role})
    user.role = role
    user.session_token = new_session_token()


def set_active(actor: User | None, user: User, active: bool) -> None:
    """Disable (ending every session of the user at once) or re-enable an account."""
    if actor is not None:
        if not actor.can_manage_user(user):
            raise NotPermitted(_("You may not change this person's account."))
        if actor.id == user.id and not active:
            raise NotPermitted(_("You cannot disable your own account."))
    if user.active == active:
        return
    audit.record(actor, "user.enable" if active else "user.disable", "user", user.email,
                 tenant_id=user.tenant_id, before={"active": user.active}, after={"active": active})
    user.active = active
    user.session_token = new_session_token()
    if not active:
        revoke_all_api_tokens(actor, user, "account disabled")


def reset_password(actor: User | None, user: User, password: str | None = None) -> str:
    """Set a new password (generated if not given) and end the user's sessions."""
    if actor is not None and not actor.can_manage_user(user):
        raise NotPermitted(_("You may not reset this person's password."))
    password = password or generate_password()
    check_password_strength(password)
    user.set_password(password)
    audit.record(actor, "user.reset_password", "user", user.email, tenant_id=user.tenant_id)
    revoke_all_api_tokens(actor, user, "password reset")
    return password


def visible_users_listing(viewer: User) -> Listing[User]:
    """People ``viewer`` may manage, by e-mail address: everyone for platform admins, own tenant
    for tenant admins."""
    query = select(User)
    if viewer.is_platform_admin:
        return Listing(query, (User.email, User.id), descending=False)
    if viewer.is_tenant_admin:
        return Listing(query.where(User.tenant_id == viewer.tenant_id), (User.email, User.id), descending=False)
    raise NotPermitted(_("Only administrators can manage people."))


DEMO_DOMAIN = "demo.cwmwl.cymru"


def demo_email(role: str, tenant_slug: str) -> str:
    return f"{role.replace('_', '-')}.{tenant_slug}@{DEMO_DOMAIN}"


def create_demo_accounts() -> list[tuple[str, str, str, str]]:
    """One account per role per tenant (platform roles on the platform tenant).

    Returns (email, role, password, TOTP secret or "") for accounts created now; the platform's
    accounts get two-factor sign-in set up (their roles require it). Existing ones are left alone
    (their password was printed when they were made; `cloud-portal users reset-password` sets a new one).
    """
    from cloud_portal.accounts import two_factor
    created = []
    tenants = db.session.scalars(select(Tenant).where(Tenant.active.is_(True)).order_by(Tenant.id))
    for tenant in tenants:
        for role in (PLATFORM_ROLES if tenant.is_platform else TENANT_ROLES):
            email = demo_email(role, tenant.slug)
            if db.session.scalar(select(User.id).where(User.email == email)) is not None:
                continue
            name = f"{role.replace('_', ' ').title()} ({tenant.name_en})"
            user, password = add_user(None, email=email, display_name=name[:120], role=role, tenant=tenant)
            secret = two_factor.enrol_now(user) if tenant.is_platform else ""
            created.append((user.email, role, password, secret))
    return created


TOKEN_PREFIX = "cwc_"  # noqa: S105 - a public prefix that marks our tokens, not a secret


def _hash_token(token: str) -> str:
    import hashlib
    return hashlib.sha256(token.encode()).hexdigest()


#: Days a new API token lasts unless its maker says otherwise, and the longest allowed.
TOKEN_DAYS_DEFAULT = 90
TOKEN_DAYS_MAX = 365
#: The owner is e-mailed this long before a token expires.
TOKEN_WARNING = timedelta(days=7)


def create_api_token(actor: User | None, user: User, name: str, *, scope: str = TOKEN_SCOPE_FULL,
                     days: int = TOKEN_DAYS_DEFAULT) -> str:
    """Make a personal API token for ``user``; returns the token (shown once). The caller commits.

    ``scope`` "read" allows only reading calls; the token expires after ``days`` days.
    """
    if actor is not None and actor.id != user.id and not actor.can_manage_user(user):
        raise NotPermitted(_("You may not make tokens for this person."))
    name = (name or "").strip()
    if not 1 <= len(name) <= 80:
        raise InvalidInput(_("Give the token a name of 1 to 80 characters, e.g. 'terraform'."))
    if scope not in TOKEN_SCOPES:
        raise InvalidInput(_("%(scope)s is not a token scope; choose read or full.", scope=repr(scope)))
    if not 1 <= days <= TOKEN_DAYS_MAX:
        raise InvalidInput(_("A token lasts 1 to %(most)s days (asked for %(days)s).", most=TOKEN_DAYS_MAX, days=days))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=days)
    db.session.add(ApiToken(user_id=user.id, name=name, token_hash=_hash_token(token), prefix=token[:12],
                            scope=scope, expires_at=expires_at))
    audit.record(actor, "token.create", "user", user.email, tenant_id=user.tenant_id,
                 after={"name": name, "scope": scope, "expires_at": expires_at.isoformat()})
    return token


def api_token(token: str) -> ApiToken | None:
    """The unrevoked token row for ``token`` (expired or not: the caller says which), or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    return db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token),
                                                    ApiToken.revoked_at.is_(None)))


def user_for_api_token(token: str) -> User | None:
    """The active user a valid (unexpired, unrevoked) token belongs to (and notes its use), or None."""
    return user_for_token_row(api_token(token))


def user_for_token_row(row: ApiToken | None) -> User | None:
    """:func:`user_for_api_token` for a row already looked up with :func:`api_token`."""
    if row is None or not row.user.active or row.expires_at <= utcnow():
        return None
    _note_token_use(row)
    return row.user


#: A token's last use is written at most this often (every API call would otherwise write).
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def _note_token_use(row: ApiToken) -> None:
    """Save when the token was last used, at most once a minute, in its own short transaction
    committed before the call's work begins: a read's transaction is rolled back (so it was never
    saved), and most calls write nothing, so reads don't queue for SQLite's write lock. The same
    connection is used (a second one per request would exhaust the pool under load)."""
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < TOKEN_USE_RESOLUTION:
        return
    db.session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    db.session.commit()


def revoke_api_token(actor: User | None, row: ApiToken, *, reason: str = "revoked by its owner") -> None:
    """Revoke one token, audit-logged. The caller commits."""
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    audit.record(actor, "token.revoke", "user", row.user.email, tenant_id=row.user.tenant_id,
                 after={"name": row.name, "prefix": row.prefix, "reason": reason})


def revoke_all_api_tokens(actor: User | None, user: User, reason: str) -> int:
    """Revoke every live token of ``user`` (a password reset, a disabled account); re-enabling the
    account does not bring them back. Returns how many. The caller commits."""
    rows = list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                          ApiToken.revoked_at.is_(None))))
    for row in rows:
        revoke_api_token(actor, row, reason=reason)
    return len(rows)


def warn_expiring_tokens(settings: dict[str, Any]) -> int:
    """E-mail each owner once, about a week before their token expires. Commits each record
    before sending, so a crash never sends twice. Returns how many were warned."""
    from cloud_portal.adapters.mail import MailError, send_mail
    warned = 0
    for row in tokens_to_warn():
        row.expiry_warned_at = utcnow()
        db.session.commit()
        try:
            send_mail(settings, row.user.email, *for_recipient(row.user.language, functools.partial(
                _token_warning, row.name, row.prefix, row.expires_at)))
        except MailError as exc:
            log.warning("token expiry warning to %s not sent: %s", row.user.email, exc)
        warned += 1
    return warned


def set_language(user: User, language: str) -> None:
    """Remember the language ``user`` chose (e-mails to them use it). The caller commits."""
    if language in LANGUAGES and user.language != language:
        user.language = language


def _token_warning(name: str, prefix: str, expires_at: datetime) -> tuple[str, str]:
    """The subject and text of a token's expiry warning, in the current language."""
    return (_("Your Cwmwl Cymru API token '%(name)s' expires on %(day)s", name=name, day=f"{expires_at:%Y-%m-%d}"),
            _("Your API token '%(name)s' (starting %(prefix)s) stops working on %(when)s UTC.\n\nMake a new one on "
              "the portal's API tokens page and change the scripts that use it.\n", name=name, prefix=prefix,
              when=f"{expires_at:%Y-%m-%d %H:%M}"))


def tokens_to_warn() -> list[ApiToken]:
    """Live tokens that expire within TOKEN_WARNING and whose owner has not been told yet."""
    now = utcnow()
    return list(db.session.scalars(select(ApiToken).where(
        ApiToken.revoked_at.is_(None), ApiToken.expiry_warned_at.is_(None), ApiToken.expires_at > now,
        ApiToken.expires_at <= now + TOKEN_WARNING)))


def prune_sign_in_attempts(*, older_than: timedelta) -> int:
    """Delete sign-in attempts older than ``older_than``; returns how many. The caller commits."""
    result = db.session.execute(delete(SignInAttempt).where(SignInAttempt.at < utcnow() - older_than))
    return int(result.rowcount)  # type: ignore[attr-defined]

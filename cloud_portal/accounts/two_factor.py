"""Two-factor sign-in with time-based one-time passwords (TOTP, RFC 6238, via pyotp).

Required for the roles in TWO_FACTOR_ROLES (platform admins and finance by default), optional
for others. Enrolment keeps the secret on the server (the user row) and is confirmed by a first
code; ten single-use recovery codes are shown once and stored as SHA-256 hashes. A code works
once (the last time-step used is kept), within one step of clock difference.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import pyotp
import segno

from cloud_portal.accounts.models import User
from cloud_portal.audit import service as audit
from cloud_portal.errors import InvalidInput
from cloud_portal.i18n import _
from cloud_portal.timeutil import utcnow

ISSUER = "Cwmwl Cymru"
RECOVERY_CODES = 10


def required_for(user: User, settings: dict[str, Any]) -> bool:
    """Whether the person's role must sign in with a second factor."""
    roles = {r.strip() for r in str(settings.get("TWO_FACTOR_ROLES") or "").split(",") if r.strip()}
    return user.role in roles


def in_use(user: User) -> bool:
    return user.totp_enabled_at is not None and bool(user.totp_secret)


def start_enrolment(user: User) -> str:
    """A new secret for ``user`` (not in use until confirmed by :func:`confirm`). The caller commits."""
    if in_use(user):
        raise InvalidInput(_("Two-factor sign-in is already on for this account."))
    user.totp_secret = pyotp.random_base32()
    return user.totp_secret


def provisioning_uri(user: User) -> str:
    return pyotp.TOTP(user.totp_secret or "").provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(user: User) -> str:
    """The enrolment QR code as an inline SVG (no image request, no script)."""
    return str(segno.make(provisioning_uri(user), error="m").svg_inline(scale=4, title="QR code"))


def _accept_code(user: User, code: str) -> bool:
    code = "".join(code.split())
    if not (user.totp_secret and code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(user.totp_secret)
    now = utcnow()
    step = totp.timecode(now)
    for candidate in (step, step - 1, step + 1):  # one step of clock difference either way
        if candidate <= (user.totp_last_step or -1):
            continue  # a code works once
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            user.totp_last_step = candidate
            return True
    return False


def confirm(actor: User | None, user: User, code: str) -> list[str]:
    """Turn two-factor sign-in on with the first code from the app; returns the recovery codes
    (shown once). The caller commits."""
    if in_use(user) or not user.totp_secret:
        raise InvalidInput(_("Start the set-up again: there is no new secret to confirm."))
    if not _accept_code(user, code):
        raise InvalidInput(_("That code is not right; enter the six digits your app shows now."))
    user.totp_enabled_at = utcnow()
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    user.recovery_code_hashes = [_hash(c) for c in codes]
    audit.record(actor, "user.two_factor_on", "user", user.email, tenant_id=user.tenant_id)
    return codes


def verify(user: User, code: str) -> bool:
    """A current code from the app, or an unused recovery code (then spent). The caller commits."""
    if not in_use(user):
        return False
    if _accept_code(user, code):
        return True
    hashed = _hash(code.strip().lower())
    remaining = list(user.recovery_code_hashes or [])
    for stored in remaining:
        if hmac.compare_digest(stored, hashed):
            remaining.remove(stored)
            user.recovery_code_hashes = remaining
            audit.record(user, "user.recovery_code_used", "user", user.email, tenant_id=user.tenant_id,
                         after={"left": len(remaining)})
            return True
    return False


def turn_off(actor: User | None, user: User, settings: dict[str, Any]) -> None:
    """Turn two-factor sign-in off (not for roles that require it). The caller commits."""
    if required_for(user, settings):
        raise InvalidInput(_("Your role must sign in with two factors; it cannot be turned off."))
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    user.recovery_code_hashes = []
    audit.record(actor, "user.two_factor_off", "user", user.email, tenant_id=user.tenant_id)


def enrol_now(user: User) -> str:
    """Set up and confirm two-factor sign-in in one go (demo accounts); returns the secret."""
    secret = start_enrolment(user)
    confirm(None, user, pyotp.TOTP(secret).at(utcnow()))
    user.totp_last_step = None  # that code was ours, not the person's: theirs may be the same one
    return secret


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()

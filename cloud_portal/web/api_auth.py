"""The API's plumbing shared by its blueprints: bearer-token sign-in, JSON bodies, errors as JSON.

Every PortalError becomes ``{"error": "<sentence a person can act on>", "code": "<kind>"}``; the
codes are api_spec.ErrorCode. Bodies and query parameters are checked by api_spec.operation().
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from cloud_portal.accounts.models import TOKEN_SCOPE_FULL
from cloud_portal.accounts.service import api_token, user_for_token_row
from cloud_portal.errors import (
    InvalidInput,
    NotFound,
    NotPermitted,
    OrganisationInactive,
    PortalError,
    QuotaExceeded,
)
from cloud_portal.extensions import db
from cloud_portal.i18n import _
from cloud_portal.timeutil import utcnow
from cloud_portal.web.api_spec import ErrorCode, error_response

F = TypeVar("F", bound=Callable[..., Any])
ERROR_STATUS = {InvalidInput: 400, NotPermitted: 403, NotFound: 404, QuotaExceeded: 409}
ERROR_CODES = {400: ErrorCode.invalid, 403: ErrorCode.forbidden, 404: ErrorCode.not_found,
               409: ErrorCode.quota_exceeded}
error = error_response


def token_required(view: F) -> F:
    """Sign the request in with its bearer token (401/403 answers if it may not), run the view,
    and answer a PortalError it raises as JSON: 400, 403, 404, 409, or 502 for the cloud's."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _space, token = header.partition(" ")
        row = api_token(token.strip()) if scheme.lower() == "bearer" else None
        if row is not None and row.expires_at <= utcnow():
            return error(_("This token expired on %(day)s; make a new one on your API tokens page.",
                           day=f"{row.expires_at:%Y-%m-%d}"),
                         401, ErrorCode.token_expired)
        user = user_for_token_row(row)  # the row looked up once, above
        if user is None:
            return error(_("Send a valid personal API token as '%(header)s'.",
                           header="Authorization: Bearer <token>"), 401, ErrorCode.unauthorised)
        if row is not None and row.scope != TOKEN_SCOPE_FULL and request.method not in ("GET", "HEAD", "OPTIONS"):
            db.session.rollback()
            return error(_("This token may only read; make a token with the full scope to change things."),
                         403, ErrorCode.read_only_token)
        if not user.tenant.active:
            db.session.rollback()
            return error(str(OrganisationInactive()), 403, ErrorCode.organisation_inactive)
        g.api_user = user
        try:
            return view(*args, **kwargs)
        except PortalError as exc:
            db.session.rollback()
            status = next((s for cls, s in ERROR_STATUS.items() if isinstance(exc, cls)), 502)
            code = ERROR_CODES.get(status, ErrorCode.cloud_error)
            return error(str(exc), status, code)
    return wrapper  # type: ignore[return-value]


"""The API's plumbing shared by its blueprints: bearer-token sign-in, JSON bodies, errors as JSON.

Every PortalError becomes ``{"error": "<sentence a person can act on>", "code": "<kind>"}``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, jsonify, request
from pydantic import BaseModel, ValidationError

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
from cloud_portal.timeutil import utcnow

F = TypeVar("F", bound=Callable[..., Any])
ERROR_STATUS = {InvalidInput: 400, NotPermitted: 403, NotFound: 404, QuotaExceeded: 409}
ERROR_CODES = {400: "invalid", 403: "forbidden", 404: "not_found", 409: "quota_exceeded"}


def error(message: str, status: int, code: str) -> Any:
    return jsonify({"error": message, "code": code}), status


def token_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        row = api_token(token.strip()) if scheme.lower() == "bearer" else None
        if row is not None and row.expires_at <= utcnow():
            return error(f"This token expired on {row.expires_at:%Y-%m-%d}; make a new one on your API tokens page.",
                         401, "token_expired")
        user = user_for_token_row(row)  # the row looked up once, above
        if user is None:
            return error("Send a valid personal API token as 'Authorization: Bearer <token>'.", 401, "unauthorised")
        if row is not None and row.scope != TOKEN_SCOPE_FULL and request.method not in ("GET", "HEAD", "OPTIONS"):
            db.session.rollback()
            return error("This token may only read; make a token with the full scope to change things.",
                         403, "read_only_token")
        if not user.tenant.active:
            db.session.rollback()
            return error(str(OrganisationInactive()), 403, "organisation_inactive")
        g.api_user = user
        try:
            return view(*args, **kwargs)
        except PortalError as exc:
            db.session.rollback()
            status = next((s for cls, s in ERROR_STATUS.items() if isinstance(exc, cls)), 502)
            code = ERROR_CODES.get(status, "cloud_error")
            return error(str(exc), status, code)
    return wrapper  # type: ignore[return-value]


def body(model: type[BaseModel]) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("Send a JSON object in the request body.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}") from None

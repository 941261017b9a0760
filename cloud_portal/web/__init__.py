"""Web layer: one blueprint per audience, plus shared error handling and security headers."""
from __future__ import annotations

from typing import Any

from flask import Flask, g, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from cloud_portal.billing.labels import component_label, unit_label
from cloud_portal.catalog.service import RATES_CACHE_KEY
from cloud_portal.errors import NotFound, NotPermitted, PortalError
from cloud_portal.extensions import db
from cloud_portal.i18n import action_word, shown
from cloud_portal.provisioning.step_words import (
    cause_label,
    job_state,
    kind_label,
    reason_shown,
    server_status,
    step_message,
    step_name,
    step_status,
)
from cloud_portal.web.api_spec import api_http_error, is_api_request
from cloud_portal.web.common import flash_error, hall_label, quota_label, role_label

#: The largest value of an INTEGER column (PostgreSQL's is 32-bit).
MAX_DATABASE_INT = 2**31 - 1


class DatabaseId(IntegerConverter):
    """``<int:...>`` bounded to what an id column holds."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DATABASE_INT)
        super().__init__(map, *args, **kwargs)


def register_web(app: Flask) -> None:
    from cloud_portal.web.admin import bp as admin_bp
    from cloud_portal.web.api import bp as api_bp
    from cloud_portal.web.api_billing import bp as api_billing_bp
    from cloud_portal.web.auth import bp as auth_bp
    from cloud_portal.web.finance import bp as finance_bp
    from cloud_portal.web.ops import bp as ops_bp
    from cloud_portal.web.ops import count_request
    from cloud_portal.web.portal import bp as portal_bp
    from cloud_portal.web.quotas import bp as quotas_bp
    from cloud_portal.web.servers import bp as servers_bp

    # Ids in URLs fit the databases' INTEGER columns; a larger one is simply not found (404)
    # instead of an overflow in the database driver (a 500).
    app.url_map.converters["int"] = DatabaseId
    for bp in (auth_bp, portal_bp, servers_bp, admin_bp, quotas_bp, finance_bp, ops_bp, api_bp, api_billing_bp):
        app.register_blueprint(bp)

    # A global, not a context variable: macros imported without context (macros.html) use it.
    app.jinja_env.globals["quota_label_text"] = quota_label
    # Texts kept in English in the database, translated as pages show them (see cloud_portal.i18n).
    app.jinja_env.filters.update(shown=shown, reason_shown=reason_shown, step_name=step_name,
                                 step_status=step_status, job_state=job_state, action_word=action_word)
    app.jinja_env.globals["step_message"] = step_message
    app.jinja_env.filters.update(component_label=component_label, unit_label=unit_label, server_status=server_status,
                                 kind_label=kind_label, cause_label=cause_label, quota_label=quota_label,
                                 hall_label=hall_label)

    @app.context_processor
    def inject_globals() -> dict[str, Any]:
        from cloud_portal.config import languages
        return {"current_locale": str(get_locale() or "en"), "languages": languages(),
                "role_label": role_label}

    @app.before_request
    def remember_start() -> None:
        import time
        g.request_started = time.perf_counter()
        # A language worked out before this request in the same app context (a service called
        # directly by a test or script answers in English) must not decide this page's.
        g.pop("_flask_babel", None)

    @app.teardown_request
    def forget_request_caches(exc: BaseException | None) -> None:
        # The signed-in user and the chosen language belong to one request. Flask-Login and
        # Flask-Babel cache them on ``g``, which lives as long as the app context; where a
        # context spans requests (tests, scripts) a disabled user or old language must not stick.
        g.pop("_login_user", None)
        g.pop("_flask_babel", None)
        g.pop(RATES_CACHE_KEY, None)
        g.pop("hall_names", None)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # A form may lead to an organisation's sign-in service: the sign-in form (to the
        # provider of the address entered) and, once signed in through one, the sign-out button
        # (to its end-session page). Browsers apply form-action to the redirects a form causes.
        form_action = " ".join(["'self'", *g.get("form_action_origins", []),
                                *([session["sso"]["origin"]] if session.get("sso", {}).get("origin") else [])])
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"frame-ancestors 'none'; form-action {form_action}")
        if request.endpoint and request.endpoint != "ops.metrics":
            count_request(response.status_code)
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        message = _("This form has expired or did not come from this site. Go back, reload the page "
                    "and try again.")
        return render_template("errors/error.html", code=400, title=_("Form not accepted"),
                               message=message), 400

    @app.errorhandler(PortalError)
    def portal_error(exc: PortalError):
        # Pages: what went wrong as a flash on the page the action came from (the API maps the
        # same errors to JSON in its own wrapper). Nothing of the failed operation is kept.
        db.session.rollback()
        flash_error(exc)
        endpoint, values = g.get("error_redirect") or ("portal.home", {})
        return redirect(url_for(endpoint, **values))

    @app.errorhandler(NotPermitted)
    @app.errorhandler(403)
    def forbidden(exc: Exception):
        if isinstance(exc, PortalError) and g.get("error_redirect"):
            return portal_error(exc)  # an action: say so on the page it came from, as before
        message = str(exc) if isinstance(exc, NotPermitted) else _(
            "Your role does not allow you to see this page. If you need it, ask your administrator.")
        return render_template("errors/error.html", code=403, title=_("Not allowed"), message=message), 403

    @app.errorhandler(NotFound)
    @app.errorhandler(404)
    def not_found(exc: Exception):
        if isinstance(exc, HTTPException) and is_api_request():
            return api_http_error(exc)
        if isinstance(exc, PortalError) and g.get("error_redirect"):
            return portal_error(exc)
        return render_template("errors/error.html", code=404, title=_("Page not found"),
                               message=_("There is nothing at this address.")), 404

    @app.errorhandler(405)
    def method_not_allowed(exc: Exception):
        if isinstance(exc, HTTPException) and is_api_request():
            return api_http_error(exc)
        return render_template("errors/error.html", code=405, title=_("Not allowed"),
                               message=_("This address does not accept that kind of request.")), 405

    @app.errorhandler(HTTPException)
    def other_http_error(exc: HTTPException):
        # The API answers JSON for every refusal Flask makes (400, 413, 415, 500...); pages keep
        # Flask's own answers for those.
        return api_http_error(exc) if is_api_request() else exc

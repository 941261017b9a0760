"""What every blueprint shares: role checks, the page error redirect, flash and role labels.

Blueprints import this module, never each other or the package (whose register_web imports
every blueprint), so the import contracts can keep blueprints independent.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, flash, g, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from cloud_portal.paging import Listing, PageRequest, SeekPage, seek_page

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def roles_required(*roles: str) -> Callable[[F], F]:
    """Signed-in users holding one of ``roles``; anyone else gets 403 (anonymous: the sign-in page)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        @login_required
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def flash_error(exc: Exception) -> None:
    flash(str(exc), "error")


def flash_form_errors(form: Any) -> None:
    """A small form posted from a page that is not its own (a server page's schedule, a
    leaver's transfer): each field's error as a message on the page it is sent back to."""
    for errors in form.errors.values():
        for message in errors:
            flash(str(message), "error")


def shown_on_form(exc: Exception) -> int:
    """A form page's PortalError: roll back, show it above the form (which keeps what was
    typed, so nothing is lost) and answer 400."""
    from cloud_portal.extensions import db
    db.session.rollback()
    flash_error(exc)
    return 400


def redirect_on_error(endpoint: str, *arg_names: str) -> Callable[[F], F]:
    """A page action whose PortalError becomes a flash message on ``endpoint``.

    ``arg_names`` are the view arguments ``endpoint``'s URL needs (e.g. "server_id"). The one
    handler for PortalError (see register_web) rolls back, flashes and redirects there.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.error_redirect = (endpoint, {name: kwargs[name] for name in arg_names})
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def requested_page() -> PageRequest:
    """The page the request's ``after``/``before``/``last`` arguments ask for.

    A link whose cursor was tampered with or cut short leads back to the list's first page
    (the same URL without the cursor), with the reason shown there.
    """
    g.error_redirect = (request.endpoint, {k: v for k, v in request.args.items()
                                           if k not in ("after", "before", "last")}
                        | dict(request.view_args or {}))
    return PageRequest.from_args(request.args)


def page_of(listing: Listing[T], per_page: int) -> SeekPage[T]:
    """The page of ``listing`` the request asks for (see :func:`requested_page`)."""
    return seek_page(listing, requested_page(), per_page)


QUOTA_LABELS = {
    "instances": _l("Servers and desktops"), "vcpus": _l("vCPUs"), "ram_mib": _l("Memory"), "disk_gb": _l("Disk"),
    "desktops": _l("Virtual desktops"),
}


def quota_label(resource: str) -> str:
    """A quota resource's name in the page's language (one lookup: lists call this per cell)."""
    label = QUOTA_LABELS.get(resource)
    return str(label) if label is not None else resource


def hall_label(key: str) -> str:
    """A data hall's name in the page's language (the names read once per request)."""
    from cloud_portal.i18n import current_language
    from cloud_portal.tenants.service import hall_names
    names = g.get("hall_names")
    if names is None:
        names = g.hall_names = hall_names(current_language())
    return names.get(key, key)


def role_label(role: str) -> str:
    labels = {
        "member": _("Member"),
        "tenant_admin": _("Tenant administrator"),
        "platform_admin": _("Platform administrator"),
        "finance": _("Finance"),
    }
    return labels.get(role, role)

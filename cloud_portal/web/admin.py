"""Administration: people (tenant admins for their tenant, platform admins for all) and the audit log."""
from __future__ import annotations

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from wtforms import SelectChoice

from cloud_portal.accounts import service as accounts
from cloud_portal.accounts.models import User
from cloud_portal.audit.service import visible_events_listing
from cloud_portal.errors import PortalError
from cloud_portal.extensions import db
from cloud_portal.i18n import current_language
from cloud_portal.provisioning.servers import owned_by, owned_counts
from cloud_portal.tenants.models import Tenant
from cloud_portal.tenants.service import list_tenants
from cloud_portal.web.common import page_of, redirect_on_error, role_label, roles_required, shown_on_form
from cloud_portal.web.forms import AddUserForm, ConfirmForm, SetRoleForm, TransferForm

bp = Blueprint("admin", __name__, url_prefix="/admin")
ADMINS = ("tenant_admin", "platform_admin")
PAGE_SIZE = 50


def _manageable_tenants() -> list[Tenant]:
    if current_user.is_platform_admin:
        return list_tenants(include_platform=True)
    return [current_user.tenant]


def _load_user_for_change(user_id: int) -> User:
    """Load a user the current admin may manage, or 404 (not 403: don't reveal other tenants' people)."""
    user = db.session.get(User, user_id)
    if user is None or not current_user.can_manage_user(user):
        abort(404)
    return user


def _role_choices(tenants: list[Tenant]) -> list[SelectChoice]:
    roles: list[str] = []
    for tenant in tenants:
        roles += [r for r in current_user.assignable_roles(tenant) if r not in roles]
    return [SelectChoice(r, role_label(r)) for r in roles]


@bp.route("/users", methods=["GET", "POST"])
@roles_required(*ADMINS)
def users():
    tenants = _manageable_tenants()
    form = AddUserForm()
    locale = str(get_locale() or "en")
    form.tenant.choices = [SelectChoice(t.id, t.display_name(locale)) for t in tenants]
    form.role.choices = _role_choices(tenants)
    status = 200
    if form.validate_on_submit():
        tenant = next((t for t in tenants if t.id == form.tenant.data), None)
        if tenant is None:
            abort(404)
        try:
            user, password = accounts.add_user(current_user, email=form.email.data or "",
                                               display_name=form.display_name.data or "",
                                               role=form.role.data or "", tenant=tenant)
        except PortalError as exc:
            status = shown_on_form(exc)
        else:
            db.session.commit()
            return _secret_once(_("%(email)s added", email=user.email),
                                _("Their first password is:"), password)
    elif request.method == "POST":
        status = 400
    people = page_of(accounts.visible_users_listing(current_user), PAGE_SIZE)
    # Built once per page, not per row: the role choices per tenant on the page (the rows'
    # selects and buttons are written out in the template with one CSRF token).
    role_choices: dict[int, list[tuple[str, str]]] = {}
    for person in people.items:
        if person.tenant_id not in role_choices:
            role_choices[person.tenant_id] = [(r, role_label(r)) for r in current_user.assignable_roles(person.tenant)]
    # Leavers who still own servers get a link to hand them over (one query for the page, asked
    # for everyone on it so the page's statements do not depend on who has left).
    owned = owned_counts([p.id for p in people.items])
    return render_template("admin/users.html", form=form, people=people, role_choices=role_choices,
                           owned=owned), status


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@roles_required(*ADMINS)
@redirect_on_error("admin.users")
def set_role(user_id: int):
    user = _load_user_for_change(user_id)
    form = SetRoleForm(prefix=f"u{user.id}")
    form.role.choices = [SelectChoice(r, role_label(r)) for r in current_user.assignable_roles(user.tenant)]
    if not form.validate_on_submit():
        flash(_("Choose one of the roles offered."), "error")
        return redirect(url_for("admin.users"))
    accounts.set_role(current_user, user, form.role.data or "")
    db.session.commit()
    flash(_("%(email)s is now: %(role)s.", email=user.email, role=role_label(user.role)), "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/<any(disable, enable):change>", methods=["POST"])
@roles_required(*ADMINS)
@redirect_on_error("admin.users")
def set_active(user_id: int, change: str):
    user = _load_user_for_change(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    accounts.set_active(current_user, user, change == "enable")
    db.session.commit()
    if change == "enable":
        flash(_("%(email)s can sign in again.", email=user.email), "success")
        return redirect(url_for("admin.users"))
    flash(_("%(email)s is disabled and has been signed out everywhere.", email=user.email), "success")
    if owned_counts([user.id]):
        # A leaver's servers keep running and costing: the admin decides what becomes of each.
        return redirect(url_for("admin.leaver_servers", user_id=user.id))
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/servers")
@roles_required(*ADMINS)
def leaver_servers(user_id: int):
    """What a person owns, each with "give it to" and "delete" (for leavers above all)."""
    user = _load_user_for_change(user_id)
    return render_template("admin/leaver.html", person=user, servers=owned_by(user), transfer=TransferForm(),
                           confirm=ConfirmForm())


@bp.route("/users/<int:user_id>/reset-password", methods=["POST"])
@roles_required(*ADMINS)
def reset_password(user_id: int):
    user = _load_user_for_change(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    password = accounts.reset_password(current_user, user)
    db.session.commit()
    return _secret_once(_("New password for %(email)s", email=user.email), _("Their new password is:"), password)


def _secret_once(title: str, message: str, secret: str):
    """Show a new password on this response only: never in a flash message, which would carry it
    in the (signed, not encrypted) session cookie, and never cached."""
    response = make_response(render_template("admin/secret_once.html", title=title, message=message, secret=secret))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/audit")
@roles_required(*ADMINS)
def audit_log():
    events = page_of(visible_events_listing(current_user), PAGE_SIZE)
    locale = current_language()
    tenant_names = {t.id: t.display_name(locale) for t in db.session.scalars(select(Tenant))}
    return render_template("admin/audit.html", events=events, tenant_names=tenant_names)

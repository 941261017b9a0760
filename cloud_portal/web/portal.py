"""Home pages: what each role sees first."""
from __future__ import annotations

from flask import Blueprint, make_response, render_template
from flask_babel import get_locale
from flask_login import current_user, login_required
from sqlalchemy import func, select

from cloud_portal.accounts.models import User
from cloud_portal.billing import reports
from cloud_portal.catalog.service import get_catalog, vm_monthly_estimate
from cloud_portal.extensions import db
from cloud_portal.provisioning.servers import desktops_of
from cloud_portal.quotas.service import headroom, limits_for_tenants
from cloud_portal.tenants.service import hall_names, list_tenants
from cloud_portal.timeutil import utcnow
from cloud_portal.web.common import redirect_on_error

bp = Blueprint("portal", __name__)
#: People named in a tenant admin's "charges by person" on the home page.
TOP_SPENDERS = 10
#: Desktops listed on a person's home page (all of them are a link away).
MY_DESKTOPS_SHOWN = 10


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
@redirect_on_error("portal.tokens")
def tokens():
    """Personal API tokens: make one (shown once, with its scope and expiry), see and revoke the others."""
    from flask import flash, request
    from flask_babel import gettext as _

    from cloud_portal.accounts.models import ApiToken
    from cloud_portal.accounts.service import create_api_token, revoke_api_token
    from cloud_portal.web.forms import ConfirmForm, TokenForm
    form = TokenForm()
    new_token = None
    if form.validate_on_submit():
        new_token = create_api_token(current_user, current_user, form.name.data or "",
                                     scope=form.scope.data or "full", days=form.days.data or 90)
        db.session.commit()
    revoke = request.form.get("revoke", type=int) if request.method == "POST" and ConfirmForm().validate() else None
    if revoke and 0 < revoke <= 2**31 - 1:  # (a larger number is no token's id)
        row = db.session.get(ApiToken, revoke)
        if row is not None and row.user_id == current_user.id and row.revoked_at is None:
            revoke_api_token(current_user, row)
            db.session.commit()
            flash(_("Token revoked."), "success")
    rows = db.session.scalars(select(ApiToken).where(ApiToken.user_id == current_user.id)
                              .order_by(ApiToken.created_at.desc()))
    # The new token is shown on this response only (not in a flash message, which would carry it
    # in the session cookie), and the page is not cached.
    response = make_response(render_template("portal/tokens.html", form=form, tokens=list(rows),
                                             confirm=ConfirmForm(), new_token=new_token, now=utcnow()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/")
@login_required
def home():
    catalog = get_catalog()
    estimates = {size.key: vm_monthly_estimate(size, catalog.rates) for size in catalog.vm_sizes}
    locale = str(get_locale() or "en")
    context = dict(catalog=catalog, estimates=estimates, tenant=current_user.tenant, locale=locale,
                   halls=hall_names(locale))
    if current_user.is_platform_admin or current_user.is_finance:
        tenants = list_tenants(include_platform=False)
        people_by_tenant = dict(db.session.execute(
            select(User.tenant_id, func.count()).where(User.active.is_(True)).group_by(User.tenant_id)).all())
        own = reports.month_to_date(current_user.id) if current_user.is_platform_admin else None
        return render_template("portal/home_platform.html", tenants=tenants, people=people_by_tenant,
                               limits=limits_for_tenants([t.id for t in tenants]),
                               spend=reports.tenants_month_to_date(), money_so_far=own, **context)
    room = headroom(current_user.tenant_id, current_user.id)  # two queries, no cloud calls
    people: int | None = None
    spend_by_person: list[reports.PersonTotal] = []
    money_so_far = reports.month_to_date(current_user.id)  # two queries
    if current_user.is_tenant_admin:
        people = db.session.scalar(select(func.count()).select_from(User).where(
            User.tenant_id == current_user.tenant_id, User.active.is_(True)))
        spend_by_person = reports.people_totals(money_so_far.month, current_user.tenant_id)  # four queries
    # The home page names the biggest spenders; the rest are one line (a big tenant has thousands).
    shown, rest = spend_by_person[:TOP_SPENDERS], spend_by_person[TOP_SPENDERS:]
    return render_template("portal/home_tenant.html", room=room, people=people, money_so_far=money_so_far,
                           desktops=desktops_of(current_user, MY_DESKTOPS_SHOWN),
                           spend_by_person=shown, others=len(rest),
                           others_total=sum((p.total for p in rest), reports.ZERO),
                           spend_total=sum((p.total for p in spend_by_person), reports.ZERO), **context)

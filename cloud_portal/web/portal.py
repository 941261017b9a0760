"""Home pages: what each role sees first."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_babel import get_locale
from flask_login import current_user, login_required
from sqlalchemy import func, select

from cloud_portal.accounts.models import User
from cloud_portal.catalog.service import get_catalog, vm_monthly_estimate
from cloud_portal.extensions import db
from cloud_portal.quotas.service import limits_for_tenant, limits_for_tenants
from cloud_portal.tenants.service import hall_names, list_tenants

bp = Blueprint("portal", __name__)


@bp.route("/")
@login_required
def home():  # type: ignore[no-untyped-def]
    catalog = get_catalog()
    estimates = {size.key: vm_monthly_estimate(size, catalog.rates) for size in catalog.vm_sizes}
    locale = str(get_locale() or "en")
    context = dict(catalog=catalog, estimates=estimates, tenant=current_user.tenant, locale=locale,
                   halls=hall_names(locale))
    if current_user.is_platform_admin or current_user.is_finance:
        tenants = list_tenants(include_platform=False)
        people = dict(db.session.execute(
            select(User.tenant_id, func.count()).where(User.active.is_(True)).group_by(User.tenant_id)).all())
        return render_template("portal/home_platform.html", tenants=tenants, people=people,
                               limits=limits_for_tenants([t.id for t in tenants]), **context)
    limits = limits_for_tenant(current_user.tenant_id)
    people = None
    if current_user.is_tenant_admin:
        people = db.session.scalar(select(func.count()).select_from(User).where(
            User.tenant_id == current_user.tenant_id, User.active.is_(True)))
    return render_template("portal/home_tenant.html", limits=limits, people=people, **context)

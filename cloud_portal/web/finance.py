"""Finance: cost centres and the rate card (statements and exports come with billing)."""
from __future__ import annotations

from flask import Blueprint, render_template

from cloud_portal.catalog.service import get_catalog
from cloud_portal.tenants.service import list_tenants
from cloud_portal.web.common import roles_required

bp = Blueprint("finance", __name__, url_prefix="/finance")


@bp.route("/")
@roles_required("finance", "platform_admin")
def overview():
    return render_template("finance/overview.html", tenants=list_tenants(include_platform=True),
                           catalog=get_catalog())

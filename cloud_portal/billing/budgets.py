"""Monthly budgets per tenant: the month-end forecast, e-mails at 80 % and 100 %, and the
approval rule for tenants whose budget says ``require_approval``."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from sqlalchemy import select

from cloud_portal.accounts.models import ROLE_TENANT_ADMIN, User
from cloud_portal.adapters.mail import MailError, send_mail
from cloud_portal.billing import charges
from cloud_portal.billing.models import BudgetAlert
from cloud_portal.billing.months import billing_zone, computed_lines
from cloud_portal.extensions import db
from cloud_portal.i18n import _, current_language, for_recipient
from cloud_portal.provisioning.requests import register_approval_rule
from cloud_portal.tenants.models import Tenant
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)
LEVELS = (80, 100)


@dataclass(frozen=True)
class BudgetState:
    tenant: Tenant
    month: str
    budget: Decimal
    forecast: Decimal

    @property
    def share(self) -> Decimal:
        """Forecast as a percentage of the budget."""
        return (self.forecast * 100 / self.budget) if self.budget else Decimal(0)


def forecast(tenant_id: int) -> Decimal:
    """The tenant's month-end total if what runs now keeps running to the end of the month."""
    zone = billing_zone()
    month = charges.month_of(utcnow(), zone)
    _start, end = charges.month_bounds(month, zone)
    return charges.total(computed_lines(month, until=end, tenant_id=tenant_id))


def budget_state(tenant: Tenant) -> BudgetState | None:
    if tenant.budget_monthly is None:
        return None
    return BudgetState(tenant, charges.month_of(utcnow(), billing_zone()), tenant.budget_monthly,
                       forecast(tenant.id))


def over_budget_needs_approval(tenant: Tenant) -> bool:
    """For the request flow: a require_approval tenant whose forecast is over its budget."""
    if tenant.over_budget != "require_approval" or tenant.budget_monthly is None:
        return False
    return forecast(tenant.id) > tenant.budget_monthly


register_approval_rule(over_budget_needs_approval)


def send_budget_alerts() -> list[tuple[str, int]]:
    """E-mail tenant admins once per month when the forecast passes 80 % and once at 100 %. Commits.

    Returns (tenant slug, level) for each alert recorded.
    """
    sent: list[tuple[str, int]] = []
    for tenant in db.session.scalars(select(Tenant).where(Tenant.budget_monthly.is_not(None),
                                                          Tenant.active.is_(True))):
        state = budget_state(tenant)
        assert state is not None
        done = set(db.session.scalars(select(BudgetAlert.level).where(
            BudgetAlert.tenant_id == tenant.id, BudgetAlert.month == state.month)))
        for level in LEVELS:
            if state.share >= level and level not in done:
                db.session.add(BudgetAlert(tenant_id=tenant.id, month=state.month, level=level,
                                           forecast=state.forecast))
                db.session.commit()  # recorded first: a crash after sending must not send twice
                _mail_admins(state, level)
                sent.append((tenant.slug, level))
    return sent


def _mail_admins(state: BudgetState, level: int) -> None:
    admins = db.session.execute(select(User.email, User.language).where(
        User.tenant_id == state.tenant.id, User.role == ROLE_TENANT_ADMIN, User.active.is_(True))).all()

    def compose() -> tuple[str, str]:
        # Amounts as the statements write them, in either language.
        body = _("The forecast for %(tenant)s in %(month)s is %(forecast)s, %(share)s%% of its monthly budget of "
                 "%(budget)s.", tenant=state.tenant.display_name(current_language()), month=state.month,
                 forecast=f"£{state.forecast:,.2f}", share=f"{state.share:.0f}", budget=f"£{state.budget:,.2f}")
        body += "\n\n"
        if level >= 100 and state.tenant.over_budget == "require_approval":
            body += _("New orders now wait for an administrator's approval.") + "\n"
        return _("Cloud budget: %(level)s%% of %(month)s's budget forecast", level=level, month=state.month), body

    for email, language in admins:
        try:
            send_mail(dict(current_app.config), email, *for_recipient(language, compose))
        except MailError as exc:
            log.warning("budget alert for %s to %s not sent: %s", state.tenant.slug, email, exc)

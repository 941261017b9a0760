"""Queue tasks. Each takes ids, checks state first, calls one domain service and commits."""
from __future__ import annotations

import logging
from datetime import timedelta

from huey import crontab

from cloud_portal.accounts import service as accounts
from cloud_portal.adapters.queue import huey, with_app_context
from cloud_portal.extensions import db
from cloud_portal.timeutil import utcnow

log = logging.getLogger(__name__)


@huey.periodic_task(crontab(minute="*"))
def worker_heartbeat() -> None:
    """Leave the time in the queue storage so /healthz can tell a worker is consuming."""
    huey.put("worker-heartbeat", utcnow().isoformat())


@huey.periodic_task(crontab(minute="17", hour="3"))
@with_app_context
def prune_sign_in_attempts() -> int:
    """Drop sign-in attempts older than 30 days (throttling looks back minutes, audit is elsewhere)."""
    removed = accounts.prune_sign_in_attempts(older_than=timedelta(days=30))
    db.session.commit()
    log.info("pruned %s old sign-in attempts", removed)
    return removed


@huey.periodic_task(crontab(minute="35"))
@with_app_context
def token_expiry_warnings() -> int:
    """Hourly: e-mail people whose API token expires within a week (once per token)."""
    from flask import current_app
    return accounts.warn_expiring_tokens(dict(current_app.config))


@huey.periodic_task(crontab(minute="5"))
@with_app_context
def budget_alerts() -> int:
    """Hourly: e-mail tenant admins whose month-end forecast passed 80 % or 100 % of their budget."""
    from cloud_portal.billing.budgets import send_budget_alerts
    return len(send_budget_alerts())

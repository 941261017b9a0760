"""Give a portal instance a server that ran all of last month, so finance has a month to close.

Run as ``python -m tests.e2e.seed_ledger EMAIL SERVER-NAME`` with the instance's environment
(CLOUD_PORTAL_INSTANCE_PATH, CLOUD_PORTAL_TENANTS_FILE). The server is ordered through the
service path and seen ACTIVE at the first hour of last month (tests.helpers.server_seen_active);
it has no Nova counterpart, so the next reconciliation ends its ledger.
"""
from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cloud_portal import create_app
from cloud_portal.accounts.models import User
from cloud_portal.extensions import db
from cloud_portal.timeutil import utcnow
from tests.helpers import server_seen_active


def last_month_start() -> datetime:
    """The first hour of the month before this one, UTC (an hour in, clear of the clock change)."""
    first_of_this = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first_of_this - timedelta(days=1)).replace(day=1, hour=1, tzinfo=UTC)


def main(email: str, name: str) -> None:
    app = create_app()
    with app.app_context():
        user = db.session.scalars(select(User).where(User.email == email)).one()
        server = server_seen_active(user, name, last_month_start(), hall=user.tenant.allowed_halls[0])
        print(f"{server.id} {last_month_start():%Y-%m}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""The reconciliation lease: one worker reconciles at a time; a dead holder's lease runs out."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from cloud_portal.extensions import db
from cloud_portal.provisioning import models as m
from cloud_portal.provisioning.reconcile import (
    RECONCILE_LEASE,
    RECONCILE_LOCK,
    reconcile,
    release_worker_lock,
    take_worker_lock,
)
from cloud_portal.timeutil import frozen_at
from tests.helpers import utc


def test_one_holder_at_a_time_until_the_lease_runs_out(app: Any) -> None:
    with frozen_at(utc("2026-12-04T09:00:00")) as move:
        assert take_worker_lock("reconcile", "a", timedelta(minutes=5)) == "a"
        assert take_worker_lock("reconcile", "b", timedelta(minutes=5)) == "a"
        assert take_worker_lock("reconcile", "a", timedelta(minutes=5)) == "a"  # renewing
        move(utc("2026-12-04T09:04:59"))
        assert take_worker_lock("reconcile", "b", timedelta(minutes=5)) == "a"
        move(utc("2026-12-04T09:05:01"))  # a died: its lease ran out
        assert take_worker_lock("reconcile", "b", timedelta(minutes=5)) == "b"
        release_worker_lock("reconcile", "a")  # a late release by the old holder changes nothing
        assert take_worker_lock("reconcile", "c", timedelta(minutes=5)) == "b"
        release_worker_lock("reconcile", "b")
        assert take_worker_lock("reconcile", "c", timedelta(minutes=5)) == "c"
    assert db.session.scalar(select(func.count()).select_from(m.WorkerLock)) == 1


def test_reconcile_does_nothing_while_another_worker_holds_the_lease(app: Any) -> None:
    take_worker_lock(RECONCILE_LOCK, "worker-2:123:abc", RECONCILE_LEASE)
    resumed: list[Any] = []
    # No cloud is touched: the context is never used when the lease is taken.
    report = reconcile(None, resume=resumed.append)  # type: ignore[arg-type]
    assert report.skipped_because == "another worker (worker-2:123:abc) is reconciling"
    assert not resumed and db.session.scalar(select(func.count()).select_from(m.ReconcileRun)) == 0

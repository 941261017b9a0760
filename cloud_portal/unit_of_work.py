"""Commit, then act: work that must only happen once the database has the rows it refers to.

A service that creates a queue job cannot enqueue it itself: a worker could pick it up before
the caller commits, or after the caller rolls back. So it calls :func:`after_commit` with what
to do, and the caller ends the operation with :func:`commit`, which commits and then runs it.
A rollback forgets the pending work.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

from cloud_portal.extensions import db

_PENDING_KEY = "cloud_portal.after_commit"


def after_commit(action: Callable[[], None]) -> None:
    """Run ``action`` after the current transaction is committed by :func:`commit`."""
    db.session.info.setdefault(_PENDING_KEY, []).append(action)


def commit() -> None:
    """Commit the session, then run what the operation queued with :func:`after_commit`."""
    db.session.commit()
    pending = db.session.info.pop(_PENDING_KEY, [])
    for action in pending:
        action()


def pending_count() -> int:
    """How many after-commit actions wait (for tests and for a warning on teardown)."""
    return len(db.session.info.get(_PENDING_KEY, []))


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    # Rows rolled back: the jobs they described do not exist, so nothing may be enqueued.
    session.info.pop(_PENDING_KEY, None)


def discard_pending() -> None:
    """Forget queued after-commit work: for callers that run the recorded jobs themselves
    (tests that drive a job step by step)."""
    db.session.info.pop(_PENDING_KEY, None)

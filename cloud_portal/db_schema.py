"""Schema migrations (Alembic through Flask-Migrate), callable from the CLI and tests."""
from __future__ import annotations

from flask_migrate import upgrade


def upgrade_to_head() -> None:
    """Apply every migration not yet applied (needs an app context)."""
    upgrade()

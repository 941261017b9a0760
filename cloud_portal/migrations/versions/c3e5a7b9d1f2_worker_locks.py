"""worker locks: a named lease one worker holds at a time (reconciliation)

With several worker machines every one runs the periodic reconciliation; the lease lets one of
them do it, so no job is resumed twice and no finding is recorded twice.

Revision ID: c3e5a7b9d1f2
Revises: b2d4f6a8c0e1
Create Date: 2026-12-04 09:20:00

"""
import sqlalchemy as sa
from alembic import op

from cloud_portal.timeutil import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'c3e5a7b9d1f2'
down_revision = 'b2d4f6a8c0e1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'worker_locks',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=120), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_worker_locks')),
    )


def downgrade():
    op.drop_table('worker_locks')

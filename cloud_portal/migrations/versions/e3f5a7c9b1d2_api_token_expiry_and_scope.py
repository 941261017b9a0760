"""API tokens: an expiry date, a scope (read or full), and when the expiry warning went

Revision ID: e3f5a7c9b1d2
Revises: d8b2c4e6f013
Create Date: 2026-12-03 09:20:00

"""
from datetime import UTC, datetime, timedelta

from alembic import op
import sqlalchemy as sa

import cloud_portal.timeutil


# revision identifiers, used by Alembic.
revision = 'e3f5a7c9b1d2'
down_revision = 'd8b2c4e6f013'
branch_labels = None
depends_on = None


def upgrade():
    # Tokens made before expiry existed get the default 90 days, counted from today.
    until = datetime.now(UTC) + timedelta(days=90)
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', cloud_portal.timeutil.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('scope', sa.String(length=8), server_default='full', nullable=False))
        batch_op.add_column(sa.Column('expiry_warned_at', cloud_portal.timeutil.UTCDateTime(timezone=True),
                                      nullable=True))
    tokens = sa.table('api_tokens', sa.column('expires_at', cloud_portal.timeutil.UTCDateTime(timezone=True)))
    op.execute(tokens.update().values(expires_at=until))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=cloud_portal.timeutil.UTCDateTime(timezone=True),
                              nullable=False)


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expiry_warned_at')
        batch_op.drop_column('scope')
        batch_op.drop_column('expires_at')

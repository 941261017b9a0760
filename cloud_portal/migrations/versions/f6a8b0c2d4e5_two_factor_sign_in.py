"""users: two-factor sign-in (TOTP secret, when confirmed, last step used, recovery codes)

Revision ID: f6a8b0c2d4e5
Revises: e3f5a7c9b1d2
Create Date: 2026-12-03 09:30:00

"""
from alembic import op
import sqlalchemy as sa

import cloud_portal.timeutil


# revision identifiers, used by Alembic.
revision = 'f6a8b0c2d4e5'
down_revision = 'e3f5a7c9b1d2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', cloud_portal.timeutil.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recovery_code_hashes', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('recovery_code_hashes')
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')

"""tenants: their own OpenID Connect provider, and whether passwords are allowed

Revision ID: d8b2c4e6f013
Revises: c5e1f0a2b9d4
Create Date: 2026-12-03 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd8b2c4e6f013'
down_revision = 'c5e1f0a2b9d4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sso', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('password_sign_in', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('password_sign_in')
        batch_op.drop_column('sso')

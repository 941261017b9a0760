"""users.language: the language a person chose, for e-mails in their language

Revision ID: a9c1e3f5b7d8
Revises: f7b9d1e3a5c6
Create Date: 2026-12-04 15:20:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a9c1e3f5b7d8'
down_revision = 'f7b9d1e3a5c6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=5), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('language')

"""images.name_cy: an image's Welsh name (tenants.yaml catalog.images[].name_cy; the name where none)

Revision ID: b0d2f4a6c8e1
Revises: a9c1e3f5b7d8
Create Date: 2026-12-04 16:15:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b0d2f4a6c8e1'
down_revision = 'a9c1e3f5b7d8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_cy', sa.String(length=120), nullable=True))


def downgrade():
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('name_cy')

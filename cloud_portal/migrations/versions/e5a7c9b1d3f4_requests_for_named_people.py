"""requests for named people: a request names the person the server is for (its owner)

Existing requests are for their requester.

Revision ID: e5a7c9b1d3f4
Revises: d4f6a8c0e2b3
Create Date: 2026-12-04 12:30:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e5a7c9b1d3f4'
down_revision = 'd4f6a8c0e2b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('server_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
    op.execute("UPDATE server_requests SET owner_id = requester_id")
    with op.batch_alter_table('server_requests', schema=None) as batch_op:
        batch_op.alter_column('owner_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(batch_op.f('fk_server_requests_owner_id_users'), 'users', ['owner_id'], ['id'])
        batch_op.create_index('ix_server_requests_owner_created', ['owner_id', 'created_at', 'id'])


def downgrade():
    with op.batch_alter_table('server_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_server_requests_owner_created')
        batch_op.drop_constraint(batch_op.f('fk_server_requests_owner_id_users'), type_='foreignkey')
        batch_op.drop_column('owner_id')

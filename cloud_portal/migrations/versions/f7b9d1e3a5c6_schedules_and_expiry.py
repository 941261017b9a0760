"""office hours and expiry: server schedules, job origin, server and request expiry, tenant defaults

Revision ID: f7b9d1e3a5c6
Revises: e5a7c9b1d3f4
Create Date: 2026-12-04 13:00:00

"""
import sqlalchemy as sa
from alembic import op

from cloud_portal.timeutil import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'f7b9d1e3a5c6'
down_revision = 'e5a7c9b1d3f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'server_schedules',
        sa.Column('server_id', sa.Integer(), nullable=False),
        sa.Column('days', sa.JSON(), nullable=False),
        sa.Column('stop_at', sa.String(length=5), nullable=True),
        sa.Column('start_at', sa.String(length=5), nullable=True),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('next_action', sa.String(length=8), nullable=True),
        sa.Column('next_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_note', sa.String(length=300), nullable=True),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['server_id'], ['servers.id'], name=op.f('fk_server_schedules_server_id_servers'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('server_id', name=op.f('pk_server_schedules')),
    )
    op.create_index(op.f('ix_server_schedules_next_at'), 'server_schedules', ['next_at'])
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=20), nullable=True))
    with op.batch_alter_table('servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('expiry_stage', sa.String(length=12), nullable=True))
        batch_op.create_index(batch_op.f('ix_servers_expires_at'), ['expires_at'])
    with op.batch_alter_table('server_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('office_hours', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('lease_max_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('lease_required_for', sa.JSON(), server_default='[]', nullable=False))


def downgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('lease_required_for')
        batch_op.drop_column('lease_max_days')
        batch_op.drop_column('office_hours')
    with op.batch_alter_table('server_requests', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('servers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_servers_expires_at'))
        batch_op.drop_column('expiry_stage')
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('origin')
    op.drop_index(op.f('ix_server_schedules_next_at'), table_name='server_schedules')
    op.drop_table('server_schedules')

"""quota usage totals: each person's held amounts, kept current instead of summed on every read

Backfilled from the reservations that count (open and consumed).

Revision ID: d4f6a8c0e2b3
Revises: c3e5a7b9d1f2
Create Date: 2026-12-04 12:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd4f6a8c0e2b3'
down_revision = 'c3e5a7b9d1f2'
branch_labels = None
depends_on = None

AMOUNTS = ("instances", "vcpus", "ram_mib", "disk_gb", "desktops")


def upgrade():
    op.create_table(
        'quota_usage',
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in AMOUNTS],
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_quota_usage_tenant_id_tenants'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_quota_usage_user_id_users')),
        sa.PrimaryKeyConstraint('tenant_id', 'user_id', name=op.f('pk_quota_usage')),
    )
    op.create_index(op.f('ix_quota_usage_user_id'), 'quota_usage', ['user_id'])
    sums = ", ".join(f"COALESCE(SUM({name}), 0)" for name in AMOUNTS)
    op.execute(f"INSERT INTO quota_usage (tenant_id, user_id, {', '.join(AMOUNTS)}) "
               f"SELECT tenant_id, user_id, {sums} FROM quota_reservations "
               f"WHERE state IN ('open', 'consumed') GROUP BY tenant_id, user_id")


def downgrade():
    op.drop_index(op.f('ix_quota_usage_user_id'), table_name='quota_usage')
    op.drop_table('quota_usage')

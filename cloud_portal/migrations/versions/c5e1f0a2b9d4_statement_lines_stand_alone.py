"""statement lines stand alone: no foreign keys to people, servers, tenants or other lines;
only adjustments are indexed by the month they adjust

A closed line is a final record that names who, what and which tenant by id (and carries its
cost centre); it is written only from ledger rows whose own foreign keys guarantee those exist.
On PostgreSQL each foreign key is a per-row trigger, and with four of them writing a month's
lines cost three times the month's whole ledger scan. The line still belongs to its closed
month (that key stays).

Revision ID: c5e1f0a2b9d4
Revises: a7c3e9d41b20
Create Date: 2026-12-03 08:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c5e1f0a2b9d4'
down_revision = 'a7c3e9d41b20'
branch_labels = None
depends_on = None

FOREIGN_KEYS = {
    "fk_statement_lines_owner_id_users": ("owner_id", "users"),
    "fk_statement_lines_server_id_servers": ("server_id", "servers"),
    "fk_statement_lines_tenant_id_tenants": ("tenant_id", "tenants"),
    "fk_statement_lines_adjusts_line_id_statement_lines": ("adjusts_line_id", "statement_lines"),
}


def _refuse_updates_again_on_sqlite():
    # SQLite rebuilds the table to drop a constraint, and its triggers go with the old table.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE TRIGGER statement_lines_are_final BEFORE UPDATE ON statement_lines "
                   "BEGIN SELECT RAISE(ABORT, 'statement lines of a closed month cannot be changed'); END")


def upgrade():
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')
    _refuse_updates_again_on_sqlite()
    op.drop_index('ix_statement_lines_adjusts_month', table_name='statement_lines')
    op.create_index('ix_statement_lines_adjusts_month', 'statement_lines', ['adjusts_month'],
                    sqlite_where=sa.text('adjusts_month IS NOT NULL'),
                    postgresql_where=sa.text('adjusts_month IS NOT NULL'))


def downgrade():
    op.drop_index('ix_statement_lines_adjusts_month', table_name='statement_lines')
    op.create_index('ix_statement_lines_adjusts_month', 'statement_lines', ['adjusts_month'])
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ['id'])
    _refuse_updates_again_on_sqlite()

"""usage intervals also in microseconds since 1970 (the charge sums read integers)

Revision ID: a7c3e9d41b20
Revises: f479d8aa922b
Create Date: 2026-12-03 08:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c3e9d41b20'
down_revision = 'f479d8aa922b'
branch_labels = None
depends_on = None


def _micros(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(ROUND(EXTRACT(EPOCH FROM {column}) * 1000000) AS BIGINT)"
    # SQLite's date functions round fractions to milliseconds: whole seconds from the text
    # without the fraction, microseconds from the text.
    return (f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000"
            f" + CAST(substr({column}, 21, 6) AS INTEGER))")


def upgrade():
    dialect = op.get_bind().dialect.name
    # NOT NULL needs a default on SQLite's ADD COLUMN; every row is filled in just after.
    op.add_column('usage_intervals', sa.Column('started_us', sa.BigInteger(), nullable=False, server_default='0'))
    op.add_column('usage_intervals', sa.Column('ended_us', sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE usage_intervals SET started_us = {_micros('started_at', dialect)}, "
               f"ended_us = CASE WHEN ended_at IS NULL THEN NULL ELSE {_micros('ended_at', dialect)} END")
    if dialect == "postgresql":
        op.alter_column('usage_intervals', 'started_us', server_default=None)


def downgrade():
    with op.batch_alter_table('usage_intervals') as batch:
        batch.drop_column('ended_us')
        batch.drop_column('started_us')

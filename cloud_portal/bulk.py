"""Writing many rows at once, inside the session's transaction, without per-row ORM or Core cost.

Closing a month writes tens of thousands of statement lines; through ``session.execute(insert(),
rows)`` SQLAlchemy's per-row parameter handling costs as much as the database's own work. Here
the column types' bind processors are applied once per value in a plain loop and the rows go to
the driver in one call: PostgreSQL's COPY (psycopg), SQLite's ``executemany``. Values are what
the ORM would store (the same processors), in the same transaction as the caller's session.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert

from cloud_portal.extensions import db


def insert_rows(table: Table, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (dicts holding ``columns``) into ``table`` in the session's transaction.

    No Python-side column default is applied (the database's own defaults are, e.g. the id):
    give every other column. Returns the number of rows written.
    """
    connection = db.session.connection()
    dialect = connection.dialect
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    columns = [c.name for c in table.columns if c.name in columns]  # the order a compiled INSERT uses
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in columns]  # noqa: SLF001
    prepared = [tuple(value if process is None or value is None else process(value)
                      for process, value in zip(processors, (row[name] for name in columns), strict=True))
                for row in rows]
    if not prepared:
        return 0
    driver: Any = connection.connection.driver_connection
    if dialect.name == "postgresql":
        names = ", ".join(f'"{name}"' for name in columns)
        with driver.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for values in prepared:
                copy.write_row(values)
    else:
        statement = str(insert(table).compile(dialect=dialect, column_keys=list(columns)))
        cursor = driver.cursor()
        try:
            cursor.executemany(statement, prepared)
        finally:
            cursor.close()
    return len(prepared)

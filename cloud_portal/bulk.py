"""Writing many rows at once, inside the session's transaction, without per-row ORM or Core cost.

Closing a month writes tens of thousands of statement lines; through ``session.execute(insert(),
rows)`` SQLAlchemy's per-row parameter handling costs as much as the database's own work. Here
the column types' bind processors are applied once per value in a plain loop and the rows go to
the driver in one call: PostgreSQL's COPY (psycopg), SQLite's ``executemany``. Values are what
the ORM would store (the same processors), in the same transaction as the caller's session.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table

from cloud_portal.extensions import db


def insert_rows(table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert ``rows`` (value sequences in the order of ``columns``) into ``table``, in the
    session's transaction.

    No Python-side column default is applied (the database's own defaults are, e.g. the id):
    give every other column. Returns the number of rows written.
    """
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    connection = db.session.connection()
    dialect = connection.dialect
    # Only the columns whose type converts values (e.g. UTC datetimes) are touched per row, and
    # dates and times (a few distinct values in a batch, e.g. one rate version) once per value.
    converting = []
    for index, name in enumerate(columns):
        column_type = table.c[name].type
        process = column_type._cached_bind_processor(dialect)  # noqa: SLF001
        if process is not None:
            if _python_type(column_type) in (date, datetime):
                process = functools.lru_cache(maxsize=1024)(process)
            converting.append((index, process))
    prepared: list[Sequence[Any]] = []
    for row in rows:
        if converting:
            row = list(row)
            for index, process in converting:
                if row[index] is not None:
                    row[index] = process(row[index])
        prepared.append(row)
    if not prepared:
        return 0
    driver: Any = connection.connection.driver_connection
    # Table and column names come from the model (checked above), never from input; values are bound.
    names = ", ".join(f'"{name}"' for name in columns)
    if dialect.name == "postgresql":
        with driver.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for line in prepared:
                copy.write_row(line)
    else:
        if dialect.paramstyle != "qmark":
            raise RuntimeError(f"bulk insert has no statement for the {dialect.name} driver's {dialect.paramstyle}")
        cursor = driver.cursor()
        try:
            placeholders = ", ".join("?" * len(columns))
            cursor.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({placeholders})',  # noqa: S608
                               prepared)
        finally:
            cursor.close()
    return len(prepared)


def _python_type(column_type: Any) -> type | None:
    try:
        return column_type.python_type
    except NotImplementedError:
        return None

"""The shape of an SQLite database nbia-audit did not necessarily write itself.

A lock database and a copy's state database arrive with the data, from anyone. Before a row
is read, their schema is compared with the one our migrations create: a view in place of a
table (a recursive one never ends, and SQLite's C code does not even let a signal stop the
read), a trigger, or a changed column would run or mean SQL we did not write. The comparison
is structural (entries, and each table's columns), not textual, so a database written
through another sqlite-utils release still reads.
"""

from __future__ import annotations

import functools
import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

__all__ = ["Shape", "expected_shape", "first_difference", "shape_of"]

Shape = frozenset[tuple[str, str, str]]


def shape_of(conn: sqlite3.Connection) -> Shape:
    """Each entry (name, type, table) and each table's columns (name, type, not-null,
    key, hidden) of the database behind ``conn``."""
    shape: set[tuple[str, str, str]] = set()
    for kind, name, table in conn.execute("SELECT type, name, tbl_name FROM sqlite_master"):
        shape.add((str(name), str(kind), str(table)))
        if kind == "table":
            for _, column, declared, notnull, _, key, hidden in conn.execute(
                "SELECT * FROM pragma_table_xinfo(?)", (name,)
            ):
                shape.add((f"{name}.{column}", "column", f"{declared}/{notnull}/{key}/{hidden}"))
    return frozenset(shape)


@functools.cache
def expected_shape(migrations: Migrations) -> Shape:
    """The shape ``migrations`` give a new database, made in memory."""
    conn = sqlite3.connect(":memory:")
    try:
        migrations.apply(sqlite_utils.Database(conn))
        return shape_of(conn)
    finally:
        conn.close()


def first_difference(
    conn: sqlite3.Connection, migrations: Migrations, *, may_lack: bool = False
) -> str:
    """"" when the database has exactly the shape ``migrations`` create; otherwise what
    differs first, in words ("holds the view 'images'").

    ``may_lack``: only what the migrations would never create counts. For a database that a
    killed run may have left half-made; the migrations add what it lacks.
    """
    found = shape_of(conn)
    expected = expected_shape(migrations)
    odd = sorted(found - expected if may_lack else found ^ expected)
    if not odd:
        return ""
    name, kind = odd[0][0], odd[0][1]
    return f"{'holds' if odd[0] in found else 'lacks'} the {kind} {name!r}"

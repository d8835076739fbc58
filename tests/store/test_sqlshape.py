"""The shape check on databases that arrive with the data: a view, a trigger, a changed or
missing column is named before any row is read; a half-made state database may lack tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from nbia_audit.store.database import lock_migrations
from nbia_audit.store.localstate import state_migrations
from nbia_audit.store.sqlshape import expected_shape, first_difference, shape_of


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A lock database as our migrations make it, on disk."""
    connection = sqlite3.connect(tmp_path / "d.lock.db")
    lock_migrations.apply(sqlite_utils.Database(connection))
    yield connection
    connection.close()


def test_a_database_our_migrations_made_has_no_difference(conn: sqlite3.Connection) -> None:
    assert first_difference(conn, lock_migrations) == ""
    assert shape_of(conn) == expected_shape(lock_migrations)


def test_a_view_in_place_of_a_table_is_named(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE series")
    conn.execute("CREATE VIEW series AS SELECT 1 AS series_uid")
    # The first difference in name order: the missing table sorts before the view.
    assert first_difference(conn, lock_migrations) == "lacks the table 'series'"
    assert ("series", "view", "series") in shape_of(conn)


def test_a_trigger_is_named(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TRIGGER t AFTER INSERT ON meta BEGIN DELETE FROM series; END")
    assert first_difference(conn, lock_migrations) == "holds the trigger 't'"


def test_a_retyped_column_is_a_difference_though_the_names_agree(
    conn: sqlite3.Connection,
) -> None:
    conn.execute("ALTER TABLE meta RENAME TO old_meta")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)")
    conn.execute("DROP TABLE old_meta")
    assert "meta.value" in first_difference(conn, lock_migrations)


def test_an_added_column_is_a_difference(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE meta ADD COLUMN extra TEXT")
    assert first_difference(conn, lock_migrations) == "holds the column 'meta.extra'"


def test_a_missing_table_counts_unless_the_database_may_be_half_made(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        state_migrations.apply(sqlite_utils.Database(conn))
        table = sorted(
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name != "_sqlite_migrations"
        )[0]
        conn.execute(f"DROP TABLE [{table}]")
        assert first_difference(conn, state_migrations).startswith("lacks the ")
        assert first_difference(conn, state_migrations, may_lack=True) == ""
        # ... but what the migrations would never create still counts when half-made.
        conn.execute("CREATE VIEW v AS SELECT 1")
        assert first_difference(conn, state_migrations, may_lack=True) == "holds the view 'v'"
    finally:
        conn.close()

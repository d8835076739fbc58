"""The local state as ``verify`` reads and writes it: records, and when their stat key counts.

Tens of thousands of records are read per run, so they are plain tuples read with one
SELECT and written with one ``executemany``, not :class:`~nbia_audit.store.localstate.FileRecord`
objects (same table, same columns: localstate.py owns the schema). :class:`Racy` applies
the racily-clean rule (:func:`~nbia_audit.store.statkey.racily_clean`) to them.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from nbia_audit.store.localstate import LocalState, state_migrations
from nbia_audit.store.sqlshape import first_difference
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import StatKey, epoch_ns, racily_clean

__all__ = ["Racy", "Rec", "Row", "load_records", "write_records"]


class Rec(NamedTuple):
    """A local-state record as read for this run."""

    path: str
    sop: str
    series: str
    key: StatKey  # when the file was last checked
    md5: str
    xxh3: str
    verified_at: str
    checked_at: str


# The one place that knows the order of these columns: _rows_to_records decodes them.
_RECORD_SQL = (
    "SELECT path, coalesce(sop_uid, ''), coalesce(series_uid, ''), device, inode, size,"
    " mtime_ns, ctime_ns, coalesce(md5, ''), coalesce(xxh3_128, ''),"
    " coalesce(verified_at, ''), coalesce(checked_at, '') FROM files"
)


class Racy:
    """The racily-clean rule for records, caching the parse of each distinct timestamp."""

    def __init__(self) -> None:
        self._epochs: dict[str, int] = {}

    def __call__(self, rec: Rec) -> bool:
        """True when ``rec``'s stat key proves nothing."""
        epoch = self._epochs.get(rec.checked_at)
        if epoch is None:
            try:
                epoch = epoch_ns(datetime.fromisoformat(rec.checked_at.replace("Z", "+00:00")))
            except ValueError:
                epoch = -(1 << 62)  # unreadable: every mtime is racy, never trust the key
            self._epochs[rec.checked_at] = epoch
        return racily_clean(rec.key.mtime_ns, epoch)


def _rows_to_records(rows: Iterable[tuple[Any, ...]]) -> dict[str, Rec]:
    # Tens of thousands of rows: tuple.__new__ builds each at half the cost of the
    # named constructors, and the row's columns are those of _RECORD_SQL.
    new = tuple.__new__
    return {
        r[0]: new(Rec, (r[0], r[1], r[2], new(StatKey, r[3:8]), r[8], r[9], r[10], r[11]))
        for r in rows
    }


def load_records(state: LocalState | None, root: str) -> dict[str, Rec]:
    """Every record of the copy at ``root`` (read-only when the state cannot be written)."""
    if state is not None:
        return _rows_to_records(state.db.execute(_RECORD_SQL))
    # The state cannot be written (a read-only copy, another user's copy): its records
    # still let quick and stat skip work and name the image an unreadable file held.
    path = str(StateFolder.of(Path(root)).database)
    if not Path(path).is_file():
        return {}
    # "immutable" when "mode=ro" fails: a database an older nbia-audit left in WAL mode
    # cannot be opened read-only without writing its shared-memory file, and one with a
    # hot rollback journal (a writer killed mid-commit) cannot be rolled back without
    # writing. Immutable reads the main file as it is: nothing of ours writes it during this
    # run, and SQLite writes whole pages, so a record is one commit's or the one before it:
    # a stale record only fails its stat key and makes us hash a file again.
    for options in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?{options}", uri=True)
            try:
                if first_difference(conn, state_migrations, may_lack=True):
                    return {}  # not a state database we shaped: nothing of it is read
                return _rows_to_records(conn.execute(_RECORD_SQL))
            finally:
                conn.close()
        except sqlite3.Error:
            continue
    return {}


Row = tuple[str, str, str, int, int, int, int, int, str, str, str, str, str]


def write_records(state: LocalState, rows: list[Row]) -> None:
    """Record files in one transaction (tuples in :class:`FileRecord` field order).

    Raises:
        StoreError: SQLite failed (disk full, a read-only copy).
    """
    state.upsert_rows(rows)

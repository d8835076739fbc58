"""The local state as ``verify`` reads and writes it: records, and the racily-clean rule.

Tens of thousands of records are read per run, so they are plain tuples read with one
SELECT and written with one ``executemany``, not :class:`~nbia_audit.store.localstate.FileRecord`
objects (same table, same columns: localstate.py owns the schema). The racily-clean rule is
here too (:class:`Racy`).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from nbia_audit.store.localstate import LocalState, state_migrations
from nbia_audit.store.sqlshape import first_difference
from nbia_audit.verify.sidecars import STATE_DIR_NAME

__all__ = ["Racy", "Rec", "Row", "load_records", "write_records"]

# A stat key taken within one timestamp tick of a write may survive a second write (git's
# "racily clean" problem, racy-git.adoc): such a record's stat key proves nothing.
COARSE_RACY_NS = 2_000_000_000  # whole-second timestamps (FAT: 2 s granularity)
FINE_RACY_NS = 100_000_000  # nanosecond fields, but the kernel's clock ticks coarsely


class Rec(NamedTuple):
    """A local-state record as read for this run (the SELECT's column order)."""

    path: str
    sop: str
    series: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    md5: str
    xxh3: str
    verified_at: str
    checked_at: str

    @property
    def key(self) -> tuple[int, ...]:
        return self[3:8]


_RECORD_SQL = (
    "SELECT path, coalesce(sop_uid, ''), coalesce(series_uid, ''), device, inode, size,"
    " mtime_ns, ctime_ns, coalesce(md5, ''), coalesce(xxh3_128, ''),"
    " coalesce(verified_at, ''), coalesce(checked_at, '') FROM files"
)


class Racy:
    """The racily-clean rule in Python, caching the parse of each distinct timestamp."""

    def __init__(self) -> None:
        self._epochs: dict[str, int] = {}

    def __call__(self, rec: Rec) -> bool:
        """True when ``rec``'s stat key proves nothing."""
        epoch = self._epochs.get(rec.checked_at)
        if epoch is None:
            try:
                moment = datetime.fromisoformat(rec.checked_at.replace("Z", "+00:00"))
                epoch = round(moment.timestamp() * 1_000_000) * 1000
            except ValueError:
                epoch = -(1 << 62)  # unreadable: every mtime is racy, never trust the key
            self._epochs[rec.checked_at] = epoch
        mtime = rec.mtime_ns
        window = COARSE_RACY_NS if mtime % 1_000_000_000 == 0 else FINE_RACY_NS
        return mtime >= epoch - window


def _rows_to_records(rows: Iterable[tuple[Any, ...]]) -> dict[str, Rec]:
    # Tens of thousands of rows: one tuple each, no per-field conversion.
    make = Rec._make
    return {r[0]: make(r) for r in rows}


def load_records(state: LocalState | None, root: str) -> dict[str, Rec]:
    """Every record of the copy at ``root`` (read-only when the state cannot be written)."""
    if state is not None:
        return _rows_to_records(state.db.execute(_RECORD_SQL))
    # The state cannot be written (a read-only copy, another user's copy): its records
    # still let quick and stat skip work and name the image an unreadable file held.
    path = os.path.join(root, STATE_DIR_NAME, "state.db")
    if not os.path.isfile(path):
        return {}
    # "immutable": a WAL database cannot be opened even read-only without writing its
    # shared-memory file. Nothing of ours writes it during this run; a stale read would
    # only make us hash a file again.
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

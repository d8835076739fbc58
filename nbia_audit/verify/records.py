"""The local state as ``verify`` reads and writes it: records, and when their stat key counts.

A copy may hold millions of files, so no run keeps its records in memory: each is read when
its file is met (a point query by path), as a plain tuple rather than a
:class:`~nbia_audit.store.localstate.FileRecord` (same table, same columns: localstate.py
owns the schema), and written in batches with one ``executemany``. :class:`Racy` applies
the racily-clean rule (:func:`~nbia_audit.store.statkey.racily_clean`) to them.
"""

from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from nbia_audit.errors import StoreError
from nbia_audit.store.localstate import LocalState, state_migrations
from nbia_audit.store.sqlshape import first_difference
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import StatKey, epoch_ns, racily_clean

__all__ = ["Racy", "Rec", "Records", "Row", "load_records", "write_records"]


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


# The one place that knows the order of these columns: _to_rec decodes them. {fs} is the
# file system's identity: fs_id, -1 (never trusted) for a record of format 1.
_RECORD_SQL = (
    "SELECT path, coalesce(sop_uid, ''), coalesce(series_uid, ''), {fs}, inode, size,"
    " mtime_ns, ctime_ns, coalesce(md5, ''), coalesce(xxh3_128, ''),"
    " coalesce(verified_at, ''), coalesce(checked_at, '') FROM files WHERE path = ?"
)
_FS_ID = "coalesce(fs_id, -1)"


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


_new = tuple.__new__
# Below a folder: "/" is 0x2F and "0" the next byte, so this range is every path that starts
# with "<folder>/" (SQLite compares text bytewise), read through the primary key's index.
_IMAGES_BELOW = (
    "SELECT sop_uid, coalesce(series_uid, '') FROM files"
    " WHERE path >= ? AND path < ? AND coalesce(sop_uid, '') != ''"
)
_SEEN_TABLE = "nbia_audit_seen"  # a TEMP table: the connection's own, on local temp storage
_SEEN_BATCH = 2000
_CHUNK = 1000
# Point queries share one read transaction, this many at a time: in rollback-journal mode a
# query on its own takes and drops the file's lock (on NFS, a round trip to the lock
# manager) and re-checks the header; held longer, it would keep other writers waiting.
_READS_PER_TRANSACTION = 2000


def _to_rec(r: tuple[Any, ...]) -> Rec:
    # Point queries by the tens of thousands: tuple.__new__ builds each at half the cost of
    # the named constructors, and the row's columns are those of _RECORD_SQL.
    return _new(Rec, (r[0], r[1], r[2], _new(StatKey, r[3:8]), r[8], r[9], r[10], r[11]))


def _storable(rel: str) -> bool:
    """Whether SQLite can hold ``rel``: a name that is not UTF-8 (read with surrogateescape)
    is never recorded, so it has no record to look up."""
    if rel.isascii():
        return True
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Records:
    """The records of one copy, read one query at a time: nothing per file is kept in memory.

    Reads go to the state database's connection (or, when the state cannot be written, to a
    read-only one of our own). The paths this run saw go to a TEMP table of the state's
    connection, so forgetting the files that are gone is one ``DELETE``, with no set of
    every path.
    """

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        guard: threading.Lock | None = None,
        *,
        read_only: bool = False,
        fs_column: str = _FS_ID,
    ) -> None:
        self._conn = conn
        self._by_path = _RECORD_SQL.format(fs=fs_column)
        self._guard = guard or threading.Lock()
        self._read_only = read_only  # our own connection, closed by close(); writes nothing
        self._count: int | None = None
        self._seen: list[tuple[str]] = []
        self._seen_table = False
        self._reads = 0  # point queries in the current read transaction

    def get(self, rel: str) -> Rec | None:
        """The record of the file at ``rel``, if there is one (a point query)."""
        if self._conn is None or not _storable(rel):
            return None
        conn = self._conn
        with self._guard:
            if not conn.in_transaction:  # a write committed (and ended) the last one
                conn.execute("BEGIN")
                self._reads = 0
            row = conn.execute(self._by_path, (rel,)).fetchone()
            self._reads += 1
            if self._reads >= _READS_PER_TRANSACTION:
                conn.commit()  # nothing written: lets other writers in
        return None if row is None else _to_rec(row)

    def images_below(self, folder: str) -> Iterator[tuple[str, str]]:
        """(SOP, series) of each record below ``folder`` that held an image (a range query,
        read a chunk at a time)."""
        if self._conn is None or not _storable(folder):
            return
        with self._guard:
            cursor = self._conn.execute(_IMAGES_BELOW, (folder + "/", folder + "0"))
            chunk = cursor.fetchmany(_CHUNK)
        while chunk:
            yield from chunk
            with self._guard:
                chunk = cursor.fetchmany(_CHUNK)

    def __len__(self) -> int:
        """How many records there are (counted once)."""
        if self._count is None:
            count = 0
            if self._conn is not None:
                with self._guard:
                    count = int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])
            self._count = count
        return self._count

    def __bool__(self) -> bool:
        return len(self) > 0

    # -- the paths this run saw -----------------------------------------------------------

    def add(self, rel: str) -> None:
        """Note that the walk saw ``rel`` (written to the TEMP table in batches)."""
        if self._conn is None or self._read_only or not _storable(rel):
            return  # read-only: nothing is forgotten; unstorable: no record has this name
        self._seen.append((rel,))
        if len(self._seen) >= _SEEN_BATCH:
            self._write_seen()

    def _write_seen(self) -> None:
        assert self._conn is not None
        with self._guard, self._conn:
            if not self._seen_table:
                self._conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {_SEEN_TABLE} (path TEXT PRIMARY KEY)"
                    " WITHOUT ROWID"
                )
                self._conn.execute(f"DELETE FROM temp.{_SEEN_TABLE}")
                self._seen_table = True
            self._conn.executemany(
                f"INSERT OR IGNORE INTO temp.{_SEEN_TABLE} (path) VALUES (?)", self._seen
            )
        self._seen = []

    def forget_unseen(self) -> int:
        """Drop the records of every path this run did not see; return how many.

        Call only after a complete walk (a path below an unlistable folder was not seen,
        yet may well be there).

        Raises:
            StoreError: SQLite failed (disk full, a read-only copy).
        """
        if self._conn is None or self._read_only:
            return 0
        try:
            self._write_seen()
            with self._guard, self._conn:
                gone = self._conn.execute(
                    f"DELETE FROM files WHERE path NOT IN (SELECT path FROM temp.{_SEEN_TABLE})"
                ).rowcount
                self._conn.execute(f"DROP TABLE temp.{_SEEN_TABLE}")
            self._seen_table = False
        except sqlite3.Error as exc:
            raise StoreError(f"cannot forget the records of files that are gone: {exc}") from exc
        return int(gone)

    def close(self) -> None:
        """Close the read-only connection of our own (the state's is the state's to close)."""
        if self._read_only and self._conn is not None:
            len(self)  # counted first: the report says how many records were read
            self._conn.close()
            self._conn = None


def load_records(state: LocalState | None, root: str) -> Records:
    """The records of the copy at ``root`` (read-only when the state cannot be written)."""
    if state is not None:
        return Records(state.db.conn, state.lock)
    # The state cannot be written (a read-only copy, another user's copy): its records
    # still let quick and stat skip work and name the image an unreadable file held.
    path = str(StateFolder.of(Path(root)).database)
    if not Path(path).is_file():
        return Records(None)
    # "immutable" when "mode=ro" fails: a database an older nbia-audit left in WAL mode
    # cannot be opened read-only without writing its shared-memory file, and one with a
    # hot rollback journal (a writer killed mid-commit) cannot be rolled back without
    # writing. Immutable reads the main file as it is: nothing of ours writes it during this
    # run, and SQLite writes whole pages, so a record is one commit's or the one before it:
    # a stale record only fails its stat key and makes us hash a file again.
    for options in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(
                f"file:{urllib.parse.quote(path)}?{options}", uri=True, check_same_thread=False
            )
        except sqlite3.Error:
            continue
        try:
            if first_difference(conn, state_migrations, may_lack=True):
                conn.close()
                return Records(None)  # not a state database we shaped: nothing of it is read
            columns = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
            fs_column = _FS_ID if "fs_id" in columns else "-1"  # format 1, not migrated
            records = Records(conn, read_only=True, fs_column=fs_column)
            len(records)  # reads the table now: a failure here tries the next way
            return records
        except sqlite3.Error:
            conn.close()
    return Records(None)


Row = tuple[str, str, str, int, int, int, int, int, str, str, str, str, str]


def write_records(state: LocalState, rows: list[Row]) -> None:
    """Record files in one transaction (tuples in :class:`FileRecord` field order).

    Raises:
        StoreError: SQLite failed (disk full, a read-only copy).
    """
    state.upsert_rows(rows)

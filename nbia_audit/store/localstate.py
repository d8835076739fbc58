"""The local state database: what this machine has seen of its copy of a dataset.

Lives at ``<root>/.nbia-audit/state.db`` and is never shared: paths on one machine never
enter a lock. ``fetch`` records every file it places; ``verify`` records every file it
proves. A record is evidence of what was true *when it was made*: a ``stat`` pass may say a
file is "unchanged since it was verified on <date>", never that it is verified now.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from nbia_audit.errors import LockFormatTooNew, StoreError
from nbia_audit.store.sqlshape import first_difference
from nbia_audit.store.statefolder import STATE_DIR, StateFolder
from nbia_audit.store.statkey import StatKey, stat_key

# STATE_DIR, StatKey and stat_key are defined in statefolder and statkey; they are named here
# too because fetch.series and the tests' fetch support import them with the records.
__all__ = ["STATE_DIR", "FileRecord", "LocalState", "StatKey", "stat_key"]

_MIGRATION_SET = "nbia-audit-state"
state_migrations = Migrations(_MIGRATION_SET)


@state_migrations()
def m001_files(db: sqlite_utils.Database) -> None:
    db.table("files").create(
        {
            "path": str,  # relative to the root, POSIX separators
            "sop_uid": str,
            "series_uid": str,
            "device": int,
            "inode": int,
            "size": int,
            "mtime_ns": int,
            "ctime_ns": int,
            "md5": str,
            "xxh3_128": str,
            "verified_at": str,  # ISO 8601 UTC of the last full (MD5) proof
            "checked_at": str,  # ISO 8601 UTC of the last pass of any level
            "lock_root": str,  # root digest of the lock it was proven against
        },
        pk="path",
    )
    db.table("files").create_index(["sop_uid"])


@state_migrations()
def m002_fs_identity(db: sqlite_utils.Database) -> None:
    # Records name the file system by its identity (statvfs f_fsid), the same on every
    # client, no longer by st_dev ("device", kept but neither read nor written). Records of
    # format 1 have none: their files are simply hashed once more, then recorded anew.
    db.table("files").add_column("fs_id", int)


_KNOWN = frozenset({"m001_files", "m002_fs_identity"})


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file of a local copy, as last proven."""

    path: str
    sop_uid: str
    series_uid: str
    fs_id: int  # the file system's identity (store.statkey); -1 for a record of format 1
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    md5: str
    xxh3_128: str
    verified_at: str
    checked_at: str
    lock_root: str

    @property
    def stat(self) -> StatKey:
        return StatKey(self.fs_id, self.inode, self.size, self.mtime_ns, self.ctime_ns)

    def reproven(self, key: StatKey, xxh3_128: str, stamp: str) -> FileRecord:
        """This record after its file, now with stat ``key``, was hashed again at ``stamp``
        and found to hold the same MD5."""
        fs_id, inode, size, mtime_ns, ctime_ns = key
        return dataclasses.replace(
            self, fs_id=fs_id, inode=inode, size=size, mtime_ns=mtime_ns, ctime_ns=ctime_ns,
            xxh3_128=xxh3_128, verified_at=stamp, checked_at=stamp,
        )  # fmt: skip


_COLUMNS = tuple(f.name for f in dataclasses.fields(FileRecord))
# What a FileRecord is read from: "device" is left out, and a record of format 1 has no fs_id.
_SELECT = ", ".join("coalesce(fs_id, -1) AS fs_id" if c == "fs_id" else c for c in _COLUMNS)
_INSERT = (
    f"INSERT OR REPLACE INTO files ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


def _shape_problem(conn: sqlite3.Connection) -> str:
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        return ""
    return first_difference(conn, state_migrations, may_lack=True)


class LocalState:
    """Thread-safe access to one copy's state database (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = StateFolder.of(root).database
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), check_same_thread=False)
            # A rollback journal, always: the copy may live on NFS, Lustre or GPFS, where
            # WAL's shared-memory index cannot work across clients (docs/shared-filesystems.md).
            # Converts a WAL database written by an older nbia-audit. FULL: a rollback
            # journal is only power-safe when it is synced at every commit.
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = FULL")
            # Writable now, or refused now: SQLite opens a file it may not write read-only
            # without a word, and a rollback journal is made in the folder at the first
            # commit. Rewriting the header's user_version needs both (it was WAL's switch
            # that used to find this out).
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
            self.db = sqlite_utils.Database(conn)
            # It travels with the copy, from anyone: never touch one we did not shape (a
            # recursive view in place of a table would never end). A new one is empty.
            odd = _shape_problem(conn)
            if odd:
                conn.close()
                raise StoreError(
                    f"{self.path}: not an nbia-audit state database (its schema {odd}); delete"
                    f" {self.path.parent} to start the local state afresh"
                )
            applied = {m.name for m in state_migrations.applied(self.db)}
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the local state database: {exc}") from exc
        if applied - _KNOWN:
            raise LockFormatTooNew(
                f"{self.path}: written by a newer nbia-audit; upgrade nbia-audit, or delete "
                f"{self.path.parent} to start the local state afresh"
            )
        state_migrations.apply(self.db)
        self._lock = threading.Lock()

    @property
    def lock(self) -> threading.Lock:
        """Held around every use of :attr:`db`'s connection (it is shared by threads)."""
        return self._lock

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> LocalState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, records: Iterable[FileRecord]) -> None:
        """Record files (replacing earlier records of the same paths), in one transaction."""
        self.upsert_rows([dataclasses.astuple(r) for r in records])

    def upsert_rows(self, rows: Sequence[tuple[object, ...]]) -> None:
        """:meth:`upsert` from plain tuples in :class:`FileRecord` field order.

        Every column is given, so replacing a row equals updating it; one ``executemany``
        avoids sqlite-utils' per-row dict handling (about 90 µs a file).

        Raises:
            StoreError: SQLite failed (disk full, a read-only copy).
        """
        if not rows:
            return
        with self._lock:
            try:
                with self.db.conn:
                    self.db.conn.executemany(_INSERT, rows)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot record files: {exc}") from exc

    def forget(self, paths: Iterable[str]) -> None:
        """Drop the records of files that are gone."""
        doomed = [(p,) for p in paths]
        with self._lock, self.db.atomic():
            self.db.conn.executemany("DELETE FROM files WHERE path = ?", doomed)

    def get(self, path: str) -> FileRecord | None:
        with self._lock:
            rows = list(self.db.table("files").rows_where("path = ?", [path], select=_SELECT))
        return FileRecord(**rows[0]) if rows else None

    def records(self) -> Iterator[FileRecord]:
        """Every record, sorted by path (read into memory first: callers iterate while
        other threads write)."""
        with self._lock:
            rows = list(self.db.table("files").rows_where(order_by="path", select=_SELECT))
        for row in rows:
            yield FileRecord(**row)

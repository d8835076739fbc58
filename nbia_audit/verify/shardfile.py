"""The file one ``verify`` shard hands to the merge: who it is, what it found, what it recorded.

One SQLite file, ``RUN/verify-<K>-of-<N>.db``: the shard's :class:`~nbia_audit.verify.tally.Tally`
(every copy it placed, the files it could not judge, the images an unreadable file may hold;
the merge takes it in whole with ``Tally.absorb``), and beside it

* ``shard``: its identity (the text lock's SHA-256, the copy's root with its file system's
  ``f_fsid`` and the root folder's inode, level, sample fraction and seed, ignore patterns, K
  and N), so the merge can refuse a shard of another run or another copy, and the run counters
  the report's facts quote;
* ``walked``: the paths it owns that its walk found (every path is one shard's), each with the
  stat key the walk saw (NULL for an entry it could not read as a file), so the merge can
  check that the copy is still the tree the shards saw, and forgets the records of exactly
  the files one process would;
* ``files``: the local-state records it would have written, in the state database's own
  columns, for the merge to write as the one writer.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from nbia_audit.errors import StoreError
from nbia_audit.shards import commit_shard_file
from nbia_audit.store.localstate import FileRecord
from nbia_audit.store.statkey import StatKey

__all__ = [
    "WALKED_COLUMNS",
    "Counters",
    "Identity",
    "ShardFacts",
    "ShardParts",
    "Walked",
    "finish_file",
    "open_shard",
    "read_shard",
    "record_rows",
    "schema_of",
    "walked_key",
    "walked_paths",
]

FORMAT = 3  # 3: walked paths carry stat keys, the identity the root's; 2: no keys
_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes shards parts of one run: a merge takes only shards whose identity agrees."""

    lock_sha256: str  # of the text lock's bytes
    root: str  # the copy's real path
    root_fs: int  # statvfs(root).f_fsid: the same path may name another copy (a mount)
    root_inode: int  # of the root folder
    level: str
    fraction: float | None
    seed: int | None
    ignore: tuple[str, ...]
    count: int  # N

    def differences(self, other: Identity) -> list[str]:
        """What differs, in words (empty: the same run)."""
        words = {
            "lock_sha256": "another lock",
            "root": "another copy",
            "root_fs": "another copy at that path (another file system)",
            "root_inode": "another copy at that path (another root folder)",
            "level": "another level",
            "fraction": "another sample fraction",
            "seed": "another seed",
            "ignore": "other --ignore patterns",
            "count": "another number of shards",
        }
        return [
            f"{text} ({getattr(other, name)!r}, not {getattr(self, name)!r})"
            for name, text in words.items()
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(slots=True)
class Counters:
    """The run counters the report's facts quote, summed over shards by the merge."""

    counts: Counter[str] = field(default_factory=Counter)
    files: int = 0
    unchanged_stat: int = 0
    stat_days: set[str] = field(default_factory=set)
    xxh3_days: set[str] = field(default_factory=set)
    walk_complete: bool = True
    workers: int = 1

    def add(self, other: Counters) -> None:
        self.counts.update(other.counts)
        self.files += other.files
        self.unchanged_stat += other.unchanged_stat
        self.stat_days |= other.stat_days
        self.xxh3_days |= other.xxh3_days
        self.walk_complete &= other.walk_complete
        self.workers = max(self.workers, other.workers)


@dataclass(slots=True)
class ShardFacts:
    """One shard's file, read back."""

    index: int
    identity: Identity
    counters: Counters
    seconds: float


_SCHEMA = """
CREATE TABLE shard (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE walked (
    path TEXT PRIMARY KEY, fs INTEGER, inode INTEGER, size INTEGER, mtime_ns INTEGER,
    ctime_ns INTEGER
);
"""


def _put(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT OR REPLACE INTO shard VALUES (?, ?)", (key, json.dumps(value)))


def _meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM shard")}


class ShardParts(NamedTuple):
    """The three working files a shard's file is assembled from."""

    tally: Path  # the shard's closed Tally file: it becomes the shard's file
    records: Path  # a state-shaped database of the records the shard would have written
    walked: Path  # the Walked file: every path the shard owned and walked, with its key


def finish_file(
    parts: ShardParts,
    final: Path,
    *,
    index: int,
    identity: Identity,
    counters: Counters,
    seconds: float,
) -> None:
    """Add the shard's identity, counters, walked paths and records (``parts``) to its
    closed tally file, then rename it to ``final``: the merge sees a shard's file whole or
    not at all.

    Raises:
        StoreError: the file cannot be written.
    """
    tally_file, records_file, walked = parts
    try:
        conn = sqlite3.connect(str(tally_file))
        try:
            # A rollback journal: the run folder may be on a network file system. No syncs
            # while building: the whole file is fsynced once before its rename.
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
            conn.execute("ATTACH DATABASE ? AS records", (str(records_file),))
            with conn:
                _put(conn, "format", FORMAT)
                _put(conn, "index", index)
                _put(conn, "identity", dataclasses.asdict(identity))
                c = counters
                _put(conn, "counts", dict(c.counts))
                _put(conn, "files", c.files)
                _put(conn, "unchanged_stat", c.unchanged_stat)
                _put(conn, "stat_days", sorted(c.stat_days))
                _put(conn, "xxh3_days", sorted(c.xxh3_days))
                _put(conn, "walk_complete", c.walk_complete)
                _put(conn, "workers", c.workers)
                _put(conn, "seconds", seconds)
                conn.execute("CREATE TABLE files AS SELECT * FROM records.files")
            conn.execute("DETACH DATABASE records")
            conn.execute("ATTACH DATABASE ? AS walked", (str(walked),))
            with conn:
                conn.execute(f"INSERT INTO main.walked SELECT {WALKED_COLUMNS} FROM walked.walked")
            conn.execute("DETACH DATABASE walked")
        finally:
            conn.close()
        commit_shard_file(tally_file, final)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{final}: cannot write the shard's file: {exc}") from exc


def open_shard(path: Path) -> sqlite3.Connection:
    """A read-only connection to a finished shard's file."""
    return sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)


def read_shard(conn: sqlite3.Connection) -> ShardFacts:
    """The identity and counters of a shard's file (the tally and records are read apart).

    Raises:
        ValueError: not a verify shard's file of this format.
    """
    try:
        meta = _meta(conn)
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a verify shard's file of format {FORMAT}")
        ident: dict[str, Any] = dict(meta["identity"])
        ident["ignore"] = tuple(ident["ignore"])
        counters = Counters(
            Counter(meta["counts"]),
            int(meta["files"]),
            int(meta["unchanged_stat"]),
            set(meta["stat_days"]),
            set(meta["xxh3_days"]),
            bool(meta["walk_complete"]),
            int(meta["workers"]),
        )
        return ShardFacts(int(meta["index"]), Identity(**ident), counters, float(meta["seconds"]))
    except (sqlite3.Error, KeyError, TypeError, ValueError) as exc:  # ValueError: int("x")
        raise ValueError(f"not a complete verify shard's file ({exc})") from None


def schema_of(conn: sqlite3.Connection) -> tuple[tuple[str, ...], ...]:
    """Every object of a shard's file (tables, indexes, views, triggers) with its SQL, for
    the merge to compare with the schema nbia-audit writes."""
    rows = conn.execute("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master")
    return tuple(sorted(tuple(str(v) for v in row) for row in rows))


def walked_paths(conn: sqlite3.Connection) -> Iterator[str]:
    """The paths a shard's walk found and owned (every path is one shard's), streamed."""
    for (path,) in conn.execute("SELECT path FROM walked"):
        yield path


def record_rows(conn: sqlite3.Connection) -> Iterator[list[tuple[object, ...]]]:
    """The local-state records a shard carries, in :class:`FileRecord` field order, a chunk
    at a time (a shard of a large copy carries millions)."""
    columns = ", ".join(f.name for f in dataclasses.fields(FileRecord))
    cursor = conn.execute(f"SELECT {columns} FROM files")  # noqa: S608
    while chunk := cursor.fetchmany(_CHUNK):
        yield chunk


WALKED_COLUMNS = "path, fs, inode, size, mtime_ns, ctime_ns"
_BLOCKED_KEY = (None, None, None, None, None)  # an entry the walk could not read as a file


def walked_key(key: StatKey | None) -> tuple[int | None, ...]:
    """The five key columns a walked path is stored with (all NULL: a blocked entry)."""
    return _BLOCKED_KEY if key is None else tuple(key)


class Walked:
    """The paths a shard owns and walked with their stat keys, buffered into a small SQLite
    file of its own (never a list of every path)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path))
        self._conn.execute("PRAGMA journal_mode = OFF")  # private, rebuilt if lost
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS walked (path TEXT PRIMARY KEY, fs INTEGER, inode INTEGER,"
            " size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER)"
        )
        self._pending: list[tuple[object, ...]] = []

    def append(self, rel: str, key: StatKey | None) -> None:
        """``rel`` was walked with stat key ``key`` (None: blocked, not readable as a file)."""
        self._pending.append((rel, *walked_key(key)))
        if len(self._pending) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR IGNORE INTO walked VALUES (?, ?, ?, ?, ?, ?)", self._pending
            )
        self._pending = []

    def close(self) -> None:
        self.flush()
        self._conn.close()

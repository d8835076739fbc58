"""The file one ``verify`` shard hands to the merge: who it is, what it found, what it recorded.

One SQLite file, ``RUN/verify-<K>-of-<N>.db``: the shard's :class:`~nbia_audit.verify.tally.Tally`
(every copy it placed, the files it could not judge, the images an unreadable file may hold;
the merge takes it in whole with ``Tally.absorb``), and beside it

* ``shard``: its identity (the text lock's SHA-256, the copy's root, level, sample fraction and
  seed, ignore patterns, K and N), so the merge can refuse a shard of another run, and the run
  counters the report's facts quote;
* ``walked``: the paths it owns that its walk found (every path is one shard's), so the merge
  forgets the records of exactly the files one process would;
* ``files``: the local-state records it would have written, in the state database's own
  columns, for the merge to write as the one writer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbia_audit.errors import StoreError
from nbia_audit.store.localstate import FileRecord

__all__ = ["Counters", "Identity", "ShardFacts", "finish_file", "read_shard"]

FORMAT = 1


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes shards parts of one run: a merge takes only shards whose identity agrees."""

    lock_sha256: str  # of the text lock's bytes
    root: str  # the copy's real path
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
CREATE TABLE walked (path TEXT PRIMARY KEY);
"""


def _put(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT OR REPLACE INTO shard VALUES (?, ?)", (key, json.dumps(value)))


def _meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM shard")}


def finish_file(
    tally_file: Path,
    records_file: Path,
    final: Path,
    *,
    index: int,
    identity: Identity,
    counters: Counters,
    walked: list[str],
    seconds: float,
) -> None:
    """Add the shard's identity, counters, walked paths and records (from the state-shaped
    ``records_file``) to its closed tally file, then rename it to ``final``: the merge sees
    a shard's file complete or not at all.

    Raises:
        StoreError: the file cannot be written.
    """
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
                rows = [(p,) for p in walked]
                conn.executemany("INSERT OR IGNORE INTO walked VALUES (?)", rows)
                conn.execute("CREATE TABLE files AS SELECT * FROM records.files")
            conn.execute("DETACH DATABASE records")
        finally:
            conn.close()
        _durable_rename(tally_file, final)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{final}: cannot write the shard's file: {exc}") from exc


def _durable_rename(source: Path, final: Path) -> None:
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(source, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    except (sqlite3.Error, KeyError, TypeError) as exc:
        raise ValueError(f"not a complete verify shard's file ({exc})") from None


def walked_paths(conn: sqlite3.Connection) -> Iterator[str]:
    """The paths a shard's walk found and owned (every path is one shard's), streamed."""
    for (path,) in conn.execute("SELECT path FROM walked"):
        yield path


def record_rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    """The local-state records a shard carries, in :class:`FileRecord` field order."""
    columns = ", ".join(f.name for f in dataclasses.fields(FileRecord))
    return list(conn.execute(f"SELECT {columns} FROM files ORDER BY path"))  # noqa: S608

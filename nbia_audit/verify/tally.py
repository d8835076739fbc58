"""What the walk found, kept in a SQLite file: the :class:`Tally` that :func:`judge` reads.

Per file, not per object: a copy of 21 M images places 21 M files, so their placements,
the stray files, the units of unreadable files and the run's two counters all live in one
SQLite file whose path the caller chooses (a private temporary one by default). The same
file is what a shard hands over: :meth:`Tally.absorb` unions another process's tally into
this one, and because the copies of one image are always read back ordered by their
relative path (never by arrival order, which depends on thread timing), the union of
shards is the tally one process would have built.

One writer: the thread that settles the walk's results. Writes are buffered and flushed
before every read.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from nbia_audit.errors import StoreError
from nbia_audit.findings import Finding, FindingKind
from nbia_audit.verify.workdb import private_folder

__all__ = ["Seen", "Tally"]

_FLUSH_EVERY = 4096


class Seen(NamedTuple):
    """A file that is (or claims to be) a locked image, and how its content is known."""

    rel: str
    sop: str
    series: str
    md5: str  # HOW_PRESENT: the MD5 recorded at the file's last pass, or ""
    how: str
    since: str = ""  # HOW_XXH3 / HOW_STAT: when the recorded MD5 was computed


# Paths are BLOBs of their UTF-8 bytes (surrogates kept: a name that is not UTF-8 is read
# with surrogateescape), so any str round-trips and the canonical order is byte order.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS placed (
    sop BLOB NOT NULL, rel BLOB NOT NULL, series BLOB NOT NULL, md5 TEXT NOT NULL,
    how TEXT NOT NULL, since TEXT NOT NULL, PRIMARY KEY (sop, rel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS placed_series ON placed(series);
CREATE TABLE IF NOT EXISTS strays (finding TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocked_units (unit BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('unattributed_blocked', 0), ('complete', 1);
"""
_COLUMNS = "rel, sop, series, md5, how, since"


def _discard(db: sqlite3.Connection, folder: Path | None) -> None:
    db.close()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _t(blob: bytes) -> str:
    return bytes(blob).decode("utf-8", "surrogatepass")


def _seen(row: tuple[bytes, bytes, bytes, str, str, str]) -> Seen:
    rel, sop, series, md5, how, since = row
    return Seen(_t(rel), _t(sop), _t(series), md5, how, since)


def _encode_finding(f: Finding) -> str:
    values = [str(f.kind), f.series_uid, f.sop_uid, f.path, f.detail, f.old, f.new, list(f.paths)]
    return json.dumps(values, ensure_ascii=True)  # \udcxx escapes keep odd names exact


def _decode_finding(text: str) -> Finding:
    kind, series, sop, path, detail, old, new, paths = json.loads(text)
    return Finding(FindingKind(kind), series, sop, path, detail, old, new, tuple(paths))


class _Strays:
    """Files that are no locked image (unexpected, unreadable): a list-like view."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def append(self, finding: Finding) -> None:
        self._tally._pending_strays.append((_encode_finding(finding),))

    def __iter__(self) -> Iterator[Finding]:
        db = self._tally._read()
        for (text,) in db.execute("SELECT finding FROM strays ORDER BY rowid"):
            yield _decode_finding(text)

    def __len__(self) -> int:
        return int(self._tally._read().execute("SELECT count(*) FROM strays").fetchone()[0])


class _Units:
    """The SOPs and series of files that could not be read: a set-like view."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def add(self, unit: str) -> None:
        self._tally._pending_units.append((_b(unit),))

    def update(self, units: Iterable[str]) -> None:
        self._tally._pending_units.extend((_b(u),) for u in units)

    def __contains__(self, unit: object) -> bool:
        if not isinstance(unit, str):
            return False
        db = self._tally._read()
        row = db.execute("SELECT 1 FROM blocked_units WHERE unit = ?", (_b(unit),)).fetchone()
        return row is not None

    def __iter__(self) -> Iterator[str]:
        for (unit,) in self._tally._read().execute("SELECT unit FROM blocked_units"):
            yield _t(unit)

    def __len__(self) -> int:
        db = self._tally._read()
        return int(db.execute("SELECT count(*) FROM blocked_units").fetchone()[0])


class Tally:
    """Everything the walk found, filled in by ``verify`` and read by :func:`judge`.

    ``Tally()`` keeps its file in a private temporary folder removed by :meth:`close`;
    :meth:`create` and :meth:`open` put it where the caller says (a shard's hand-over).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._folder: Path | None = None
        if path is None:
            self._folder = private_folder("nbia-audit-tally-")
            path = self._folder / "tally.db"
        self.path = Path(path)
        try:
            # A URI, so that absorb can ATTACH a shard's file read-only (mode=ro).
            self._db = sqlite3.connect(
                f"file:{quote(os.fspath(self.path))}", uri=True, check_same_thread=False
            )
            # A rollback journal, never WAL: a shard's tally may sit on a network file system.
            # A private temporary one needs none: nothing to recover after a crash.
            journal = "OFF" if self._folder is not None else "DELETE"
            self._db.execute(f"PRAGMA journal_mode={journal}")
            self._db.execute("PRAGMA synchronous=OFF")  # made durable by close()
            self._db.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            if hasattr(self, "_db"):
                self._db.close()
            self._discard_folder()
            raise StoreError(f"{self.path}: cannot use it as a verify tally ({exc})") from None
        self._pending: list[tuple[bytes, bytes, bytes, str, str, str]] = []
        self._pending_strays: list[tuple[str]] = []
        self._pending_units: list[tuple[bytes]] = []
        self.strays = _Strays(self)
        self.blocked_units = _Units(self)
        # A temporary tally nobody closed still goes when it is collected.
        self._finalizer = weakref.finalize(self, _discard, self._db, self._folder)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Tally:
        """A new, empty tally at ``path`` (replacing any file there)."""
        Path(path).unlink(missing_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Tally:
        """The tally another run wrote at ``path``.

        Raises:
            StoreError: there is no file at ``path``, or it is not a tally.
        """
        if not Path(path).is_file():
            raise StoreError(f"{path}: no verify tally there")
        return cls(path)

    # -- writing --------------------------------------------------------------------------

    def place(self, seen: Seen) -> None:
        """One file taken for one image (or an image of a series pinned by hash only)."""
        rel, sop, series, md5, how, since = seen
        self._pending.append((_b(sop), _b(rel), _b(series), md5, how, since))
        if len(self._pending) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered."""
        db = self._db
        if self._pending:
            db.executemany("INSERT OR REPLACE INTO placed VALUES (?, ?, ?, ?, ?, ?)", self._pending)
            self._pending = []
        if self._pending_strays:
            db.executemany("INSERT INTO strays VALUES (?)", self._pending_strays)
            self._pending_strays = []
        if self._pending_units:
            db.executemany("INSERT OR IGNORE INTO blocked_units VALUES (?)", self._pending_units)
            self._pending_units = []
        db.commit()

    def _read(self) -> sqlite3.Connection:
        self.flush()
        return self._db

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def _set_counter(self, name: str, value: int) -> None:
        self._db.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
        self._db.commit()

    @property
    def unattributed_blocked(self) -> int:
        """Files that could not be read and that no record ties to an image."""
        return self._counter("unattributed_blocked")

    @unattributed_blocked.setter
    def unattributed_blocked(self, value: int) -> None:
        self._set_counter("unattributed_blocked", value)

    @property
    def complete(self) -> bool:
        """False once anything could not be read: the check did not complete."""
        return bool(self._counter("complete"))

    @complete.setter
    def complete(self, value: bool) -> None:
        self._set_counter("complete", int(value))

    def absorb(self, path: str | os.PathLike[str]) -> None:
        """Take in the whole tally another process wrote at ``path`` (a shard's).

        Raises:
            StoreError: there is no tally at ``path``, or it cannot be read.
        """
        if not Path(path).is_file():
            raise StoreError(f"{path}: no verify tally there")
        db = self._read()
        try:
            # Read-only: a shard's file is input, never written by the merge.
            db.execute("ATTACH DATABASE ? AS other", (f"file:{quote(os.fspath(path))}?mode=ro",))
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read this verify tally ({exc})") from None
        try:
            db.execute("INSERT OR REPLACE INTO placed SELECT * FROM other.placed")
            db.execute("INSERT INTO strays SELECT finding FROM other.strays ORDER BY rowid")
            db.execute("INSERT OR IGNORE INTO blocked_units SELECT unit FROM other.blocked_units")
            db.execute(
                "UPDATE counters SET value = value + (SELECT value FROM other.counters"
                " WHERE name = 'unattributed_blocked') WHERE name = 'unattributed_blocked'"
            )
            db.execute(
                "UPDATE counters SET value = min(value, (SELECT value FROM other.counters"
                " WHERE name = 'complete')) WHERE name = 'complete'"
            )
            db.commit()
        except sqlite3.Error as exc:
            db.rollback()
            raise StoreError(f"{path}: cannot read this verify tally ({exc})") from None
        finally:
            db.execute("DETACH DATABASE other")

    # -- reading --------------------------------------------------------------------------

    def copies(self, sop: str) -> list[Seen]:
        """Every file taken for ``sop``, by relative path."""
        rows = self._read().execute(
            f"SELECT {_COLUMNS} FROM placed WHERE sop = ? ORDER BY rel", (_b(sop),)
        )
        return [_seen(r) for r in rows]

    def copies_in_series(self, series_uid: str) -> dict[str, list[Seen]]:
        """The files taken for images of one series: SOP -> its copies, by relative path."""
        found: dict[str, list[Seen]] = {}
        rows = self._read().execute(
            f"SELECT {_COLUMNS} FROM placed WHERE series = ? ORDER BY sop, rel",
            (_b(series_uid),),
        )
        for row in rows:
            seen = _seen(row)
            found.setdefault(seen.sop, []).append(seen)
        return found

    def images_first_seen_in(self, series_uid: str) -> list[str]:
        """SOPs whose first copy (by relative path) claims ``series_uid``, by SOP."""
        rows = self._read().execute(
            "SELECT sop FROM placed AS p WHERE series = ? AND rel = "
            "(SELECT min(rel) FROM placed WHERE sop = p.sop) ORDER BY sop",
            (_b(series_uid),),
        )
        return [_t(sop) for (sop,) in rows]

    def placements(self) -> Iterator[Seen]:
        """Every placement, by SOP then relative path (streamed: for a hand-over)."""
        for row in self._read().execute(f"SELECT {_COLUMNS} FROM placed ORDER BY sop, rel"):
            yield _seen(row)

    def sops(self) -> Iterator[str]:
        """Every SOP with at least one copy, in order (streamed)."""
        for (sop,) in self._read().execute("SELECT DISTINCT sop FROM placed ORDER BY sop"):
            yield _t(sop)

    @property
    def first(self) -> Iterator[str]:
        """The placed SOPs, as iterating the old ``first`` dict gave them (for callers
        written against it; prefer :meth:`sops`, :meth:`placements` or :meth:`absorb`)."""
        return self.sops()

    def placed_count(self) -> int:
        """How many files were placed."""
        return int(self._read().execute("SELECT count(*) FROM placed").fetchone()[0])

    # -- the end --------------------------------------------------------------------------

    def close(self) -> None:
        """Write everything and close; a temporary tally's folder is removed, a chosen
        file is made durable (a shard renames it once closed)."""
        if not self._finalizer.alive:
            return
        try:
            self.flush()
        finally:
            self._finalizer()
        if self._folder is None:
            with open(self.path, "rb") as handle:
                os.fsync(handle.fileno())

    def _discard_folder(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Tally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

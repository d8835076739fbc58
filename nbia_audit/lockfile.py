"""The text lock (``dataset.lock``) and the atomic replacement of a lock's two files.

The text lock is TOML, so any reader (Python's ``tomllib`` included) can parse it; it has a
``[lock]`` header and one line per series, sorted, so a git diff shows exactly which series
changed. It is deterministic: the same upstream gives the same bytes (the resolver keeps
``resolved-at`` when nothing else changed).

The lock is two files, which cannot be renamed together atomically. The text lock is the
commit point: the database records the sha256 of the text it belongs with. ``commit_lock`` keeps the
previous database as ``<db>.old`` until the new text lock is in place, and
``recover_interrupted`` (run before any command reads a lock) rolls an interrupted commit
forward or back, so a reader always sees the old pair or the new pair, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import LockFormatTooNew, LockNotFound, StoreError

try:  # POSIX; elsewhere lock pairs are still replaced atomically, just not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
from .models import LOCK_FORMAT, LockedSeries, LockHeader
from .store import LockDatabase

__all__ = [
    "TextLock",
    "commit_lock",
    "open_pair",
    "database_path",
    "read_text_lock",
    "recover_interrupted",
    "render_text_lock",
    "root_digest",
]

_SERIES_KEYS = (
    ("uid", "series_uid"),
    ("hash", "series_hash"),
    ("images", "image_count"),
    ("bytes", "bytes"),
    ("collection", "collection"),
    ("patient", "patient_id"),
    ("study", "study_uid"),
    ("modality", "modality"),
    ("released", "released"),
    ("license", "license_name"),
    ("doi", "doi"),
)


def database_path(lock_path: Path) -> Path:
    """``dataset.lock`` -> ``dataset.lock.db``."""
    return lock_path.with_name(lock_path.name + ".db")


def root_digest(series: Iterable[LockedSeries]) -> str:
    """``sha256:<hex>`` over ``<series uid> <series hash> <image count>`` lines, sorted.

    Each series hash commits to its images' archive MD5s (protocol §1.3), so this digest
    commits to the content of the whole dataset, independent of metadata such as licenses.
    """
    lines = sorted(f"{s.series_uid} {s.series_hash} {s.image_count}\n" for s in series)
    return "sha256:" + hashlib.sha256("".join(lines).encode("ascii")).hexdigest()


def _toml_str(value: str) -> str:
    # json.dumps produces a valid TOML basic string for any text (same escapes), ASCII-only.
    return json.dumps(value, ensure_ascii=True)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _toml_str(str(value))


def render_text_lock(header: LockHeader, spec_json: str, series: Sequence[LockedSeries]) -> str:
    """Render the text lock: header, the normalised spec, then one line per series."""
    lines = [
        "# nbia-audit lock: pins every series of a dataset by its NBIA hierarchy hash.",
        "# Written by `nbia-audit lock`; do not edit. Per-image MD5s are in the .db beside it.",
        "",
        "[lock]",
    ]
    for key in (
        "format",
        "name",
        "spec_digest",
        "server",
        "base_url",
        "api",
        "tool_version",
        "resolved_at",
        "root_digest",
        "series_count",
        "image_count",
        "total_bytes",
        "series_only",
    ):
        lines.append(f"{key.replace('_', '-')} = {_toml_value(getattr(header, key))}")
    lines.append(f"spec = {_toml_str(spec_json)}")
    lines.append("")
    lines.append("[dataset]")
    lines.append("series = [")
    ordered = sorted(series, key=lambda s: (s.collection, s.patient_id, s.study_uid, s.series_uid))
    for s in ordered:
        fields = ", ".join(f"{k} = {_toml_value(getattr(s, attr))}" for k, attr in _SERIES_KEYS)
        lines.append(f"  {{ {fields} }},")
    lines.append("]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class TextLock:
    """What the text lock alone says: enough to verify each series of a copy by its hash."""

    header: LockHeader
    spec_json: str
    series: tuple[dict[str, object], ...]


def read_text_lock(path: Path) -> TextLock:
    """Parse a text lock.

    Raises:
        LockNotFound: no file at ``path``.
        StoreError: the file is not a lock this version can read.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockNotFound(f"{path}: lock not found; run `nbia-audit lock` first") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StoreError(f"{path}: not a readable nbia-audit lock ({exc})") from None
    try:
        raw = data["lock"]
        fmt = int(raw["format"])
        if fmt > LOCK_FORMAT:
            raise LockFormatTooNew(
                f"{path}: lock format {fmt} is newer than this nbia-audit reads ({LOCK_FORMAT});"
                " upgrade nbia-audit"
            )
        header = LockHeader(**{k.replace("-", "_"): v for k, v in raw.items() if k != "spec"})
        return TextLock(
            header=header, spec_json=str(raw["spec"]), series=tuple(data["dataset"]["series"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: not a valid nbia-audit lock (missing or bad {exc})") from None


def open_pair(lock_path: Path) -> tuple[TextLock, LockDatabase]:
    """Read the text lock and open its database, after finishing an interrupted commit.

    The caller closes the database (it is a context manager).

    Raises:
        LockNotFound: either file is missing.
        StoreError: the files cannot be read, or they are not one pair.
    """
    recover_interrupted(lock_path)
    text = read_text_lock(lock_path)
    db = LockDatabase(database_path(lock_path))
    if db.header() != text.header:
        db.close()
        raise StoreError(
            f"{lock_path}: the text lock and its database disagree; re-run `nbia-audit lock`"
        )
    return text, db


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


_IDENTITY_KEY = "text_sha256"


def _text_identity(lock_path: Path) -> str | None:
    """The sha256 of the text lock's bytes: what its database must name to be its pair."""
    try:
        return hashlib.sha256(lock_path.read_bytes()).hexdigest()
    except OSError:
        return None


def _database_identity(db_path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_IDENTITY_KEY,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def _stamp_database(db_path: Path, text: str) -> None:
    """Record in the new database which text lock it belongs with."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    conn = sqlite3.connect(str(db_path))
    try:
        with conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_IDENTITY_KEY, digest)
            )
    finally:
        conn.close()


@contextlib.contextmanager
def _pair_guard(lock_path: Path) -> Iterator[None]:
    """Serialise commits and recoveries of lock pairs in one folder, across processes.

    Without it, one process's recovery would delete the temporary files of another's commit
    in progress. Held while a new pair is written and renamed, never while the archive is
    asked. A local lock: on network file systems it does not serialise two hosts.
    """
    fd = os.open(lock_path.parent, os.O_RDONLY)
    try:
        # Some network file systems refuse locks (ENOLCK, EOPNOTSUPP): the pair is still
        # replaced atomically, only concurrent runs in one folder are not serialised.
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def recover_interrupted(lock_path: Path) -> None:
    """Finish or undo a lock commit that was interrupted, and remove stray temporary files.

    Raises:
        StoreError: the files are in a state this function cannot explain, or cannot be
            changed (permissions, disk).
    """
    try:
        with _pair_guard(lock_path):
            _recover(lock_path)
    except OSError as exc:
        raise StoreError(f"{lock_path}: cannot recover the lock pair: {exc.strerror}") from None


def _recover(lock_path: Path) -> None:
    db_path = database_path(lock_path)
    old_db = db_path.with_name(db_path.name + ".old")
    for stray in (
        lock_path.with_name(lock_path.name + ".new"),
        db_path.with_name(db_path.name + ".new"),
        db_path.with_name(db_path.name + ".new-journal"),  # SQLite's, if killed mid-write
    ):
        stray.unlink(missing_ok=True)
    if not old_db.exists():
        return
    text_id = _text_identity(lock_path)
    if text_id is not None and text_id == _database_identity(db_path):
        old_db.unlink()  # the new text lock landed: the commit completed
    elif text_id is not None and _database_identity(old_db) in (text_id, None):
        # The text lock is still the old one (the old database names it, or predates the
        # identity stamp, which every new database carries): roll back.
        os.replace(old_db, db_path)
    elif not lock_path.exists():
        # Interrupted before the first text lock ever landed: there was no previous lock.
        old_db.unlink()
    else:
        raise StoreError(
            f"{lock_path}: the lock and its database do not match; re-run `nbia-audit lock`"
        )
    _fsync_dir(lock_path.parent)


def commit_lock(lock_path: Path, text: str, write_database: Callable[[Path], None]) -> None:
    """Replace the lock pair at ``lock_path`` with a new text and database, atomically.

    ``write_database(path)`` writes the complete new database at ``path``. Until the final
    rename of the text lock, any interruption leaves the previous pair in force (after
    :func:`recover_interrupted`).

    Raises:
        StoreError: the pair cannot be written (disk full, permissions, a file system
            without hard links); the previous pair is left in force.
    """
    db_path = database_path(lock_path)
    new_db = db_path.with_name(db_path.name + ".new")
    new_text = lock_path.with_name(lock_path.name + ".new")
    old_db = db_path.with_name(db_path.name + ".old")
    try:
        with _pair_guard(lock_path):
            _recover(lock_path)
            try:
                write_database(new_db)
                _stamp_database(new_db, text)
                with open(new_db, "rb") as handle:
                    os.fsync(handle.fileno())
                _write_durably(new_text, text)
                if db_path.exists():
                    os.link(db_path, old_db)  # keep the previous database until the text lands
                    _fsync_dir(lock_path.parent)
                os.replace(new_db, db_path)
                _fsync_dir(lock_path.parent)
                os.replace(new_text, lock_path)  # the commit point
                _fsync_dir(lock_path.parent)
                old_db.unlink(missing_ok=True)
            except BaseException:
                new_db.unlink(missing_ok=True)
                new_text.unlink(missing_ok=True)
                if old_db.exists():
                    _recover(lock_path)
                raise
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"{lock_path}: cannot write the lock: {reason}") from exc

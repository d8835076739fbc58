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
import dataclasses
import datetime as dt
import hashlib
import os
import re
import sqlite3
import stat
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbia_audit.boundedinput import nonblocking_opener
from nbia_audit.crashpoints import crashpoint
from nbia_audit.errors import LockFormatTooNew, LockNotFound, StoreError

try:  # POSIX; elsewhere lock pairs are still replaced atomically, just not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
from nbia_audit.models import LOCK_FORMAT, LockedSeries, LockHeader
from nbia_audit.store.storable import from_storable, to_storable

__all__ = [
    "ANY_PREVIOUS",
    "COMMITTED_FROM",
    "COMMIT_CRASHPOINTS",
    "MAX_TEXT_LOCK_BYTES",
    "ConcurrentLockWrite",
    "TextLock",
    "commit_lock",
    "database_path",
    "is_series_hash",
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

_LOCKED_SERIES_TYPES = {f.name: f.type for f in dataclasses.fields(LockedSeries)}


def database_path(lock_path: Path) -> Path:
    """``dataset.lock`` -> ``dataset.lock.db``."""
    return lock_path.with_name(lock_path.name + ".db")


def root_digest(series: Iterable[LockedSeries]) -> str:
    """``sha256:<hex>`` over ``<series uid> <series hash> <image count>`` lines, sorted.

    Each series hash commits to its images' archive MD5s (protocol §1.3), so this digest
    commits to the content of the whole dataset, independent of metadata such as licenses.
    """
    lines = sorted(f"{s.series_uid} {s.series_hash} {s.image_count}\n" for s in series)
    # UIDs are ASCII in practice; the escape keeps any string the archive sent hashable.
    return "sha256:" + hashlib.sha256(to_storable("".join(lines)).encode("utf-8")).hexdigest()


_TOML_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_str(value: str) -> str:
    """A TOML basic string, ASCII only, that any TOML reader parses back to ``value``.

    Characters outside the BMP are written as one ``\\UXXXXXXXX`` escape (TOML has no
    surrogate pairs); lone surrogates, which TOML cannot hold, go through
    :func:`nbia_audit.store.storable.to_storable` first.
    """
    out = ['"']
    for char in to_storable(value):
        code = ord(char)
        if char in _TOML_SHORT_ESCAPES:
            out.append(_TOML_SHORT_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _toml_str(str(value))


_HEADER_KEYS = (
    "format",
    "name",
    "spec_digest",
    "server",
    "base_url",
    "api",
    "tool_version",
    "resolved_at",
    "root_digest",
    "metadata_digest",
    "series_count",
    "image_count",
    "total_bytes",
    "series_only",
)


def render_text_lock(header: LockHeader, spec_json: str, series: Sequence[LockedSeries]) -> str:
    """Render the text lock: header, the normalised spec, then one line per series."""
    lines = [
        "# nbia-audit lock: pins every series of a dataset by its NBIA hierarchy hash.",
        "# Written by `nbia-audit lock`; do not edit. Per-image MD5s are in the .db beside it.",
        "",
        "[lock]",
    ]
    for key in _HEADER_KEYS:
        if key == "metadata_digest" and header.format == 1:
            continue  # format 1 locks predate it (kept so such a pair is rewritten as it was)
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
    """What the text lock alone says, proven consistent with its own root digest.

    ``series`` carries the fields the text lock writes; the others (description, body
    part ...) are empty, and ``images_pinned`` is False: the text pins series hashes only.
    ``sha256`` is the digest of the file's bytes, which its database's stamp must name.
    """

    header: LockHeader
    spec_json: str
    series: tuple[LockedSeries, ...]
    sha256: str


# A text lock holds one short line per series: even NLST's 203,087 series stay far below.
MAX_TEXT_LOCK_BYTES = 1 << 30
_HEX32 = frozenset("0123456789abcdef")
_HEADER_TYPES = {f.name: f.type for f in dataclasses.fields(LockHeader)}
_TEXT_ONLY_DEFAULTS: dict[str, Any] = {
    "description": "",
    "series_number": "",
    "body_part": "",
    "manufacturer": "",
    "max_submission": "",
    "license_url": "",
    "third_party": False,
    "images_pinned": False,
}


def is_series_hash(value: str) -> bool:
    """NBIA's series hash: 32 lowercase hex digits (``%032x``), or "" for a series with no
    images (protocol §1.3)."""
    return value == "" or (len(value) == 32 and set(value) <= _HEX32)


def read_text_lock(path: Path) -> TextLock:
    """Parse a text lock and prove it consistent with itself.

    Every header field and series line must be present with its type, series UIDs unique,
    every series hash well formed, and the counts and the root digest must recompute from
    the series lines: a lock cut short, or with a line edited or deleted, is refused.

    Raises:
        LockNotFound: no file at ``path``.
        LockFormatTooNew: written by a newer nbia-audit.
        StoreError: the file is not a lock this version can read, or does not prove itself.
    """
    raw = _read_bounded(path)
    try:
        decoded = raw.decode("utf-8")
        data = _parse_as_written(decoded) or tomllib.loads(decoded)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StoreError(
            f"{path}: not a readable nbia-audit lock ({_short(str(exc))}); was it cut short"
            " or edited? Restore it from version control, or re-run `nbia-audit lock`"
        ) from None
    header, spec_json = _parse_header(path, data)
    series = _parse_series(path, data)
    _check_totals(path, header, series)
    return TextLock(header, spec_json, series, hashlib.sha256(raw).hexdigest())


# The exact shape render_text_lock writes a series line in. Reading such lines with one
# regular expression each is ten times faster than a general TOML parser (a lock of NLST
# has 203,087 of them); anything else in the series list goes to tomllib, so what a line
# means never depends on which path read it.
_BASIC = r'"((?:[^"\\\x00-\x1f\x7f]|\\(?:["\\btnfr]|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}))*)"'
_WHOLE = r"(0|[1-9][0-9]*)"
_SERIES_LINE = re.compile(
    r"  \{ "
    + ", ".join(
        f"{key} = {_WHOLE if attr in ('image_count', 'bytes') else _BASIC}"
        for key, attr in _SERIES_KEYS
    )  # fmt: skip
    + r" \},"
)
_ESCAPE = re.compile(r'\\(["\\btnfr]|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})')
_SHORT_UNESCAPES = {'"': '"', "\\": "\\", "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r"}
_SERIES_OPENING = "\n[dataset]\nseries = [\n"


def _unescape(text: str) -> str | None:
    """A TOML basic string's content, or None where TOML would refuse it (a surrogate)."""
    if "\\" not in text:
        return text
    bad = False

    def one(match: re.Match[str]) -> str:
        nonlocal bad
        code = match.group(1)
        if code in _SHORT_UNESCAPES:
            return _SHORT_UNESCAPES[code]
        value = int(code[1:], 16)
        if 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:
            bad = True
            return ""
        return chr(value)

    out = _ESCAPE.sub(one, text)
    return None if bad else out


def _parse_as_written(text: str) -> dict[str, Any] | None:
    """Parse a text lock laid out exactly as render_text_lock writes it; None otherwise."""
    head, found, tail = text.partition(_SERIES_OPENING)
    if not found or not tail.endswith("]\n"):
        return None
    lines = tail[:-2].split("\n")
    if lines.pop() != "":
        return None
    rows: list[dict[str, Any]] = []
    for line in lines:
        match = _SERIES_LINE.fullmatch(line)
        if match is None:
            return None
        row: dict[str, Any] = {}
        for (key, attr), value in zip(_SERIES_KEYS, match.groups(), strict=True):
            if attr in ("image_count", "bytes"):
                row[key] = int(value)
                continue
            unescaped = _unescape(value)
            if unescaped is None:
                return None
            row[key] = unescaped
        rows.append(row)
    try:
        header = tomllib.loads(head)
    except tomllib.TOMLDecodeError:
        return None
    if set(header) != {"lock"}:
        return None
    return {"lock": header["lock"], "dataset": {"series": rows}}


def _read_bounded(path: Path) -> bytes:
    try:
        with open(path, "rb", opener=nonblocking_opener) as handle:  # a FIFO must not hang
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"{path}: not a regular file; give the path of a dataset.lock")
            if info.st_size > MAX_TEXT_LOCK_BYTES:
                raise StoreError(f"{path}: larger than any lock nbia-audit writes (over 1 GiB)")
            # read(n) reserves n bytes up front: ask for what the file holds (plus one, to see
            # a file still growing), never for the cap itself.
            raw = handle.read(info.st_size + 1)
            while len(raw) <= MAX_TEXT_LOCK_BYTES and (more := handle.read(1 << 20)):
                raw += more
    except FileNotFoundError:
        raise LockNotFound(f"{path}: lock not found; run `nbia-audit lock` first") from None
    except IsADirectoryError:
        raise StoreError(f"{path}: is a folder; give the path of a dataset.lock") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the lock: {exc.strerror}") from None
    if len(raw) > MAX_TEXT_LOCK_BYTES:
        raise StoreError(f"{path}: larger than any lock nbia-audit writes (over 1 GiB)")
    return raw


def _short(text: str, limit: int = 120) -> str:
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_header(path: Path, data: dict[str, Any]) -> tuple[LockHeader, str]:
    table = data.get("lock")
    if not isinstance(table, dict):
        raise StoreError(f"{path}: not an nbia-audit lock (no [lock] table)")
    fmt = table.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise StoreError(f"{path}: not an nbia-audit lock (no valid format number)")
    if fmt > LOCK_FORMAT:
        raise LockFormatTooNew(
            f"{path}: lock format {fmt} is newer than this nbia-audit reads ({LOCK_FORMAT});"
            " upgrade nbia-audit"
        )
    values: dict[str, Any] = {}
    known = {k.replace("_", "-") for k in _HEADER_TYPES} | {"spec"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise StoreError(f"{path}: [lock] has a key this version does not write: {unknown[0]}")
    for name, kind in _HEADER_TYPES.items():
        key = name.replace("_", "-")
        if key not in table:
            if name == "metadata_digest" and fmt == 1:
                values[name] = ""
                continue
            raise StoreError(f"{path}: [lock] lacks {key}")
        values[name] = _typed(path, f"[lock] {key}", table[key], kind)
    spec = table.get("spec")
    if not isinstance(spec, str):
        raise StoreError(f"{path}: [lock] lacks the embedded spec")
    return LockHeader(**values), from_storable_checked(path, "[lock] spec", spec)


def _typed(path: Path, where: str, value: object, kind: object) -> object:
    if kind == "str" and isinstance(value, str) and value.isascii():
        return value  # the common case: no escape can be in it (store.storable.ESCAPE is not ASCII)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise StoreError(f"{path}: {where} must be a whole number, not {_short(repr(value))}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise StoreError(f"{path}: {where} must be true or false, not {_short(repr(value))}")
    if isinstance(value, str):
        return from_storable_checked(path, where, value)
    raise StoreError(f"{path}: {where} must be a string, not {_short(repr(value))}")


def from_storable_checked(path: Path, where: str, value: str) -> str:
    try:
        return from_storable(value)
    except ValueError as exc:
        raise StoreError(f"{path}: {where}: {exc}") from None


_SERIES_TYPES = {attr: _LOCKED_SERIES_TYPES[attr] for _key, attr in _SERIES_KEYS}


def _parse_series(path: Path, data: dict[str, Any]) -> tuple[LockedSeries, ...]:
    dataset = data.get("dataset")
    rows = dataset.get("series") if isinstance(dataset, dict) else None
    if not isinstance(rows, list):
        raise StoreError(f"{path}: not an nbia-audit lock (no [dataset] series list)")
    out: list[LockedSeries] = []
    seen: set[str] = set()
    keys = {key for key, _attr in _SERIES_KEYS}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or set(row) != keys:
            raise StoreError(
                f"{path}: series entry {number} does not have exactly the fields a lock writes"
            )
        values: dict[str, Any] = {
            attr: _typed(path, f"series entry {number} {key}", row[key], _SERIES_TYPES[attr])
            for key, attr in _SERIES_KEYS
        }
        series = LockedSeries(**values, **_TEXT_ONLY_DEFAULTS)
        if not series.series_uid:
            raise StoreError(f"{path}: series entry {number} has an empty uid")
        if series.series_uid in seen:
            raise StoreError(f"{path}: series {series.series_uid} is pinned twice")
        if not is_series_hash(series.series_hash):
            raise StoreError(
                f"{path}: series {series.series_uid}: hash {_short(series.series_hash)!r} is not"
                " an NBIA series hash (32 lowercase hex digits)"
            )
        seen.add(series.series_uid)
        out.append(series)
    return tuple(out)


def _check_totals(path: Path, header: LockHeader, series: Sequence[LockedSeries]) -> None:
    digest = root_digest(series)
    if digest != header.root_digest:
        raise StoreError(
            f"{path}: the series lines give root digest {digest}, the header pins"
            f" {_short(header.root_digest)}: the lock was edited or cut short; restore it"
            " from version control, or re-run `nbia-audit lock`"
        )
    totals = (
        ("series-count", header.series_count, len(series)),
        ("image-count", header.image_count, sum(s.image_count for s in series)),
        ("total-bytes", header.total_bytes, sum(s.bytes for s in series)),
    )
    for key, said, counted in totals:
        if said != counted:
            raise StoreError(
                f"{path}: [lock] {key} is {said}, the series lines add up to {counted}"
            )


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


def _leftovers(lock_path: Path) -> list[Path]:
    """The files an interrupted commit can leave beside a lock pair."""
    db_path = database_path(lock_path)
    return [
        lock_path.with_name(lock_path.name + ".new"),
        db_path.with_name(db_path.name + ".new"),
        db_path.with_name(db_path.name + ".new-journal"),  # SQLite's, if killed mid-write
        db_path.with_name(db_path.name + ".old"),
    ]


def recover_interrupted(lock_path: Path) -> None:
    """Finish or undo a lock commit that was interrupted, and remove stray temporary files.

    A pair with nothing to repair is only looked at, so reading works from a read-only
    checkout or share; only a repair needs write access to the lock's folder.

    Raises:
        StoreError: the files are in a state this function cannot explain, or cannot be
            changed (permissions, disk, a read-only location).
    """
    if not any(p.exists() for p in _leftovers(lock_path)):
        return
    try:
        with _pair_guard(lock_path):
            _recover(lock_path)
    except OSError as exc:
        raise StoreError(
            f"{lock_path}: an interrupted `nbia-audit lock` left files to tidy beside it, and"
            f" tidying them needs write access to {lock_path.parent} ({exc.strerror}); run"
            " the command once where that folder is writable"
        ) from None


def _recover(lock_path: Path) -> None:
    db_path = database_path(lock_path)
    *strays, old_db = _leftovers(lock_path)
    for stray in strays:
        if stray.exists():
            stray.unlink()
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


def _refuse_concurrent(lock_path: Path) -> None:
    try:
        when = dt.datetime.fromtimestamp(lock_path.stat().st_mtime, dt.UTC)
        at = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    except OSError:
        at = "a moment ago"  # the other run removed it
    raise ConcurrentLockWrite(
        f"another run wrote {lock_path} at {at}, after this run read it; nothing was"
        " written: re-run `nbia-audit lock`"
    )


class ConcurrentLockWrite(StoreError):
    """Another run replaced the lock pair after this run read it: this run's pair is not
    written over it."""


ANY_PREVIOUS = "any"  # commit_lock's ``previous``: replace whatever is there

# commit_lock's crash points (see crashpoints.py), in order; a crash at any of them leaves the
# old pair in force, except after the commit point (the text lock's rename): then the new pair.
COMMIT_CRASHPOINTS = (
    "lock:database-written",
    "lock:database-stamped",
    "lock:text-written",
    "lock:old-database-kept",
    "lock:database-renamed",
    "lock:text-renamed",
)
COMMITTED_FROM = "lock:text-renamed"


def commit_lock(
    lock_path: Path,
    text: str,
    write_database: Callable[[Path], None],
    *,
    previous: str | None = ANY_PREVIOUS,
) -> None:
    """Replace the lock pair at ``lock_path`` with a new text and database, atomically.

    ``write_database(path)`` writes the complete new database at ``path``. Until the final
    rename of the text lock, any interruption leaves the previous pair in force (after
    :func:`recover_interrupted`). ``previous`` is the sha256 of the text lock this run read
    (None: it found none); if another run has written the lock since, nothing is written.

    Raises:
        ConcurrentLockWrite: another run wrote the lock after this one read it.
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
            if previous != ANY_PREVIOUS and _text_identity(lock_path) != previous:
                _refuse_concurrent(lock_path)
            try:
                write_database(new_db)
                crashpoint("lock:database-written")
                _stamp_database(new_db, text)
                with open(new_db, "rb") as handle:
                    os.fsync(handle.fileno())
                crashpoint("lock:database-stamped")
                _write_durably(new_text, text)
                crashpoint("lock:text-written")
                if db_path.exists():
                    os.link(db_path, old_db)  # keep the previous database until the text lands
                    _fsync_dir(lock_path.parent)
                crashpoint("lock:old-database-kept")
                os.replace(new_db, db_path)
                _fsync_dir(lock_path.parent)
                crashpoint("lock:database-renamed")
                os.replace(new_text, lock_path)  # the commit point
                _fsync_dir(lock_path.parent)
                crashpoint("lock:text-renamed")
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


def replace_database(
    lock_path: Path, write_database: Callable[[Path], None], *, text_sha256: str
) -> None:
    """Replace the lock database beside ``lock_path`` with another form of the same content.

    The text lock does not change. ``write_database(path)`` writes (and proves) the complete
    new database at ``path``; it is renamed over the old one only when it returns, and only
    if the text lock is still the one read (``text_sha256``). Interrupted, the old database
    stays in force and the temporary file is removed by the next reader
    (:func:`recover_interrupted`).

    Raises:
        ConcurrentLockWrite: another run wrote the lock after this one read it.
        StoreError: the database cannot be written or renamed; the old one stays.
    """
    db_path = database_path(lock_path)
    new_db = db_path.with_name(db_path.name + ".new")
    try:
        with _pair_guard(lock_path):
            _recover(lock_path)
            if _text_identity(lock_path) != text_sha256:
                _refuse_concurrent(lock_path)
            try:
                write_database(new_db)
                with open(new_db, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(new_db, db_path)
                _fsync_dir(lock_path.parent)
            except BaseException:
                new_db.unlink(missing_ok=True)
                raise
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"{db_path}: cannot replace the lock database: {reason}") from exc

"""``fetch`` split into shards and merged.

A shard fetches only its own series (:func:`~nbia_audit.shards.assign_series`, balanced by
the bytes the lock holds) and never writes the destination's state database or the lock
database: the records of what it placed, its outcomes and the images it pinned for
series-only series travel in its file ``RUN/fetch-K-of-N.db``, written under a temporary name
and renamed when complete. It locks and clears only its own work area, so shards on many
nodes never block or empty each other. The merge refuses foreign shards (any file named like
a shard's that is not exactly one this run wrote), stops (exit 3) on missing ones, writes
every shard's records and pins (the one writer) and reports the union; a file gone or changed
since its shard recorded it fails its series instead of being recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from nbia_audit.archive.session import ArchiveTarget, archive_session
from nbia_audit.client.auth import Credentials
from nbia_audit.errors import ShardsIncomplete, SpecError, StoreError
from nbia_audit.fetch.layouts import Layout, parse_layout
from nbia_audit.fetch.placement import Workspace
from nbia_audit.fetch.run import FetchReport, SeriesOutcome, Target, fetch_into
from nbia_audit.findings import FetchStatus
from nbia_audit.models import LockedImage
from nbia_audit.shards import (
    Shard,
    ShardResult,
    assign_series,
    commit_shard_file,
    shard_file_name,
    shard_work_folder,
)
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.localstate import FileRecord, LocalState, state_migrations
from nbia_audit.store.sqlshape import Shape, expected_shape, first_difference, shape_of
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import stat_key
from nbia_audit.store.textlock import database_path, read_text_lock

__all__ = ["ShardResult", "fetch_shard", "merge_fetch"]

VERB = "fetch"
_EXT = "db"
# A shard's file is named exactly as shard_file_name spells a valid Shard (ASCII digits, no
# leading zeros); any other name that looks like a shard's (fetch-01-of-2.db, Unicode digits)
# is refused, never taken as a second file of a shard or quietly left out.
_NAME = re.compile(r"fetch-([0-9]+)-of-([0-9]+)\.db", re.ASCII)
_LOOKS_LIKE = re.compile(r"fetch-.*-of-.*\.db", re.DOTALL)
_FORMAT = 1
_SCHEMA = """
CREATE TABLE shard (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE outcomes (series_uid TEXT PRIMARY KEY, outcome TEXT NOT NULL);
CREATE TABLE pins (series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL, archive_md5 TEXT,
                   size INTEGER, PRIMARY KEY (series_uid, sop_uid));
"""


@dataclasses.dataclass(frozen=True, slots=True)
class _Identity:
    lock_sha256: str
    dest: str  # real path
    layout: str
    count: int


def _identity(lock_path: Path, dest: Path, layout: Layout, count: int) -> _Identity:
    read_text_lock(lock_path)  # the one way a missing or bad lock is reported
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    label = layout.template if layout.name == "template" else layout.name
    return _Identity(digest, os.path.realpath(dest), label, count)


def _shard_workspace(dest: Path, shard: Shard) -> Workspace:
    """The destination's work area for one shard: its own exclusive lock (and the whole
    destination's shared), its own run folder; shards run side by side, never beside a
    whole fetch or a merge."""
    return Workspace(dest, lock_name=f"fetch-shard-{shard.index}-of-{shard.count}")


def _read_only_records(database: Path, *, shard_file: bool = False) -> list[FileRecord]:
    """The records of a state database (or of a shard's file, which holds the same
    ``files`` table beside its own), read without writing anything to it."""
    if not database.is_file():
        return []
    columns = ", ".join(f.name for f in dataclasses.fields(FileRecord))
    try:
        uri = f"file:{urllib.parse.quote(str(database))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True)
        try:
            if not shard_file and first_difference(conn, state_migrations, may_lack=True):
                raise StoreError(f"{database}: not an nbia-audit state database")
            rows = conn.execute(f"SELECT {columns} FROM files ORDER BY path")  # noqa: S608
            return [FileRecord(*row) for row in rows]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{database}: cannot read the local state: {exc}") from exc


class _Pins:
    """The images a shard pinned for series-only series, kept for the merge to write."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str | None, int | None]] = []

    def __call__(self, series_uid: str, images: list[LockedImage]) -> bool:
        self.rows += [(series_uid, i.sop_uid, i.archive_md5, i.size) for i in images]
        return True


def fetch_shard(
    lock_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    shard: Shard,
    shard_dir: str | os.PathLike[str],
    *,
    archive: ArchiveTarget | None = None,
    credentials: Credentials | None = None,
    layout: str | Layout = "classic",
    **options: Any,
) -> ShardResult:
    """Fetch the series ``shard`` owns into ``dest``; write its outcomes to ``shard_dir``.

    ``archive`` is a server alias, a URL, an ``NbiaClient`` or an ``Archive``; None means
    the server the lock was made from (plain strings travel to a worker process or node).
    ``options`` are those of :func:`~nbia_audit.fetch.run.fetch_dataset` (``workers``,
    ``retry``, ``limits``, ``on_progress``, ``on_series``, ``now``), except ``series``.
    Running a shard again resumes it.

    Raises:
        SpecError: a bad layout or option; ``series`` given.
        LockNotFound, StoreError: the lock or the destination's state cannot be read, or the
            shard's file cannot be written.
        DownloadError: the destination cannot be used (this shard already running there).
        ApiError: the archive cannot be used at all.
    """
    if "series" in options:
        raise SpecError("a shard fetches the series the split gives it", path="--series")
    started = time.monotonic()
    lock_path, dest, run_dir = Path(lock_path), Path(dest), Path(shard_dir)
    chosen = layout if isinstance(layout, Layout) else parse_layout(layout)
    identity = _identity(lock_path, dest, chosen, shard.count)
    text_lock = read_text_lock(lock_path)
    series = text_lock.series
    owner = assign_series(((s.series_uid, s.bytes) for s in series), shard.count)
    mine = [s.series_uid for s in series if owner[s.series_uid] == shard.index]
    final = run_dir / shard_file_name(VERB, shard, _EXT)
    earlier = _earlier_records(final, identity)
    records = _read_only_records(StateFolder.of(dest).database) + earlier
    work = shard_work_folder(run_dir, VERB, shard)
    pins = _Pins()
    try:
        sink = LocalState(work)
        try:
            sink.upsert(earlier)  # what this shard placed before stays this shard's to report
            header = text_lock.header
            where = (header.server or header.base_url) if archive is None else archive
            with (
                archive_session(where, api=header.api, credentials=credentials) as view,
                _shard_workspace(dest, shard) as workspace,
            ):
                target = Target(workspace, records, sink, pins)
                report = fetch_into(
                    lock_path, dest, view, target, layout=chosen, series=mine, **options
                )
        finally:
            sink.close()
        _finish(sink.path, final, shard, identity, report, pins, time.monotonic() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    placed = sum(s.images for s in report.series if s.status != FetchStatus.FAILED)
    return ShardResult(VERB, shard, final, len(mine), placed, time.monotonic() - started)


def _earlier_records(final: Path, identity: _Identity) -> list[FileRecord]:
    """The records of this shard's finished file from an earlier run of the same shard."""
    try:
        earlier = _read_shard(final)
    except ValueError:
        return []
    if earlier.identity != identity:
        return []
    return _read_only_records(final, shard_file=True)


def _outcome_json(outcome: SeriesOutcome) -> str:
    return json.dumps({**dataclasses.asdict(outcome), "status": outcome.status.value})


def _outcome(text: str) -> SeriesOutcome:
    data = json.loads(text)
    data["status"] = FetchStatus(data["status"])
    data["reasons"] = tuple(data["reasons"])
    return SeriesOutcome(**data)


def _finish(
    database: Path,
    final: Path,
    shard: Shard,
    identity: _Identity,
    report: FetchReport,
    pins: _Pins,
    seconds: float,
) -> None:
    try:
        conn = sqlite3.connect(str(database))
        try:
            conn.execute("PRAGMA journal_mode = DELETE")  # the run folder may be on NFS
            conn.execute("PRAGMA synchronous = OFF")  # fsynced once, whole, before the rename
            conn.executescript(f"BEGIN; {_SCHEMA} COMMIT;")
            with conn:
                meta = {
                    "format": _FORMAT,
                    "index": shard.index,
                    "identity": dataclasses.asdict(identity),
                    "bytes_received": report.bytes_received,
                    "seconds": seconds,
                }
                conn.executemany(
                    "INSERT INTO shard VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
                )
                conn.executemany(
                    "INSERT INTO outcomes VALUES (?, ?)",
                    [(s.series_uid, _outcome_json(s)) for s in report.series],
                )
                conn.executemany("INSERT OR REPLACE INTO pins VALUES (?, ?, ?, ?)", pins.rows)
        finally:
            conn.close()
        commit_shard_file(database, final)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{final}: cannot write the shard's file: {exc}") from exc


# What each key of a shard file's ``shard`` table holds: a file with any other key, or a
# value of another type, was not written by this nbia-audit and is refused as foreign.
_META_TYPES: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "index": (int,),
    "identity": (dict,),
    "bytes_received": (int,),
    "seconds": (int, float),
}
_IDENTITY_TYPES: dict[str, type] = {"lock_sha256": str, "dest": str, "layout": str, "count": int}
_OUTCOME_TYPES: dict[str, tuple[type, ...]] = {
    "series_uid": (str,),
    "collection": (str,),
    "patient_id": (str,),
    "status": (str,),
    "images": (int,),
    "bytes": (int,),
    "attempts": (int,),
    "reasons": (list,),
    "filled": (bool,),
}


@dataclasses.dataclass(frozen=True, slots=True)
class _ShardFile:
    """A finished fetch shard's file, read whole except its records and pins."""

    path: Path
    index: int
    identity: _Identity
    bytes_received: int
    seconds: float
    outcomes: tuple[SeriesOutcome, ...]


@functools.cache
def _shard_shape() -> Shape:
    """The shape of the file a shard writes: the local state's ``files`` (and migrations)
    table, plus its own tables."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(_SCHEMA)
        return expected_shape(state_migrations) | shape_of(conn)
    finally:
        conn.close()


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)


def _typed(value: object, types: tuple[type, ...]) -> bool:
    # bool is an int to isinstance; no count or size of ours is ever a bool
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _checked_outcome(text: object) -> SeriesOutcome:
    if not isinstance(text, str):
        raise ValueError("an outcome is not text")
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != set(_OUTCOME_TYPES):
        raise ValueError("an outcome is not one nbia-audit writes")
    for key, types in _OUTCOME_TYPES.items():
        if not _typed(data[key], types):
            raise ValueError(f"an outcome's {key!r} is not a {types[0].__name__}")
    if not all(isinstance(r, str) for r in data["reasons"]):
        raise ValueError("an outcome's reasons are not text")
    return _outcome(text)


def _read_shard(path: Path) -> _ShardFile:
    """A fetch shard's file, proven to be one nbia-audit writes: its schema exactly, every
    key of its ``shard`` table present and of its type, every outcome well-formed.

    Raises:
        ValueError: not a finished fetch shard's file (the message says why, in one line).
    """
    if not path.is_file():
        raise ValueError("not a file")
    try:
        conn = _connect_read_only(path)
        try:
            odd = sorted(shape_of(conn) ^ _shard_shape())
            if odd:
                name, kind = odd[0][0], odd[0][1]
                have = "holds" if odd[0] not in _shard_shape() else "lacks"
                raise ValueError(f"not a fetch shard's file ({have} the {kind} {name!r})")
            meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM shard")}
            texts = [t for (t,) in conn.execute("SELECT outcome FROM outcomes")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ValueError(f"not a fetch shard's file ({exc})") from None
    except (TypeError, json.JSONDecodeError):
        raise ValueError("not a fetch shard's file (its shard table is not JSON)") from None
    if meta.get("format") != _FORMAT:
        raise ValueError(f"not a fetch shard's file of format {_FORMAT}")
    if set(meta) != set(_META_TYPES):
        raise ValueError(f"its shard table holds {sorted(meta)}, not {sorted(_META_TYPES)}")
    for key, types in _META_TYPES.items():
        if not _typed(meta[key], types):
            raise ValueError(f"its {key!r} is not a {types[0].__name__}")
    ident = meta["identity"]
    if set(ident) != set(_IDENTITY_TYPES) or not all(
        _typed(ident[k], (t,)) for k, t in _IDENTITY_TYPES.items()
    ):
        raise ValueError("its identity is not one nbia-audit writes")
    try:
        outcomes = tuple(_checked_outcome(t) for t in texts)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a fetch shard's file ({exc})") from None
    return _ShardFile(
        path, meta["index"], _Identity(**ident), meta["bytes_received"], meta["seconds"], outcomes
    )


def _name_problem(name: str) -> str:
    """Why ``name``, which looks like a shard file's, is not one nbia-audit writes ("" when
    it is)."""
    match = _NAME.fullmatch(name)
    if match is None:
        return "not a name nbia-audit writes (fetch-K-of-N.db, K and N in ASCII digits)"
    try:
        shard = Shard(int(match[1]), int(match[2]))
    except ValueError as exc:
        return str(exc)
    if name != shard_file_name(VERB, shard, _EXT):
        return "not a name nbia-audit writes (fetch-K-of-N.db, no leading zeros)"
    return ""


def _refusal(name: str, shard: _ShardFile, *, digest: str, real_dest: str, owner: Any) -> str:
    """Why the well-formed shard file ``name`` is not of this run ("" when it is)."""
    ident = shard.identity
    match = _NAME.fullmatch(name)
    why = []
    if match is None or (shard.index, ident.count) != (int(match[1]), int(match[2])):
        why.append(f"it says it is shard {shard.index}/{ident.count}")
    if ident.lock_sha256 != digest:
        why.append("it was made with another lock (or this lock changed since)")
    if ident.dest != real_dest:
        why.append(f"it fetched into another folder ({ident.dest})")
    if not why:
        others = [
            o.series_uid for o in shard.outcomes if owner(ident.count, o.series_uid) != shard.index
        ]
        if others:
            why.append(f"it reports series {others[0]}, which is not this shard's")
    return "; ".join(why)


def _gather(lock_path: Path, dest: Path, run_dir: Path) -> list[_ShardFile]:
    """Every shard of one fetch, checked: all N present, each once, none foreign.

    Raises:
        ShardsIncomplete: a shard is missing, or a file is from another run or not a
            shard's file nbia-audit writes.
        StoreError: the run folder cannot be listed.
    """
    try:
        names = sorted(os.listdir(run_dir))
    except OSError as exc:
        raise StoreError(f"{run_dir}: cannot list the run folder ({exc.strerror})") from None
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    real_dest = os.path.realpath(dest)
    series = read_text_lock(lock_path).series
    owners: dict[int, dict[str, int]] = {}

    def owner(count: int, series_uid: str) -> int | None:
        if count not in owners:
            owners[count] = assign_series(((s.series_uid, s.bytes) for s in series), count)
        return owners[count].get(series_uid)

    good: list[_ShardFile] = []
    foreign: list[str] = []
    for name in names:
        if not _LOOKS_LIKE.fullmatch(name):
            continue
        odd_name = _name_problem(name)
        if odd_name:
            foreign.append(f"{name!r}: {odd_name}")
            continue
        try:
            shard = _read_shard(run_dir / name)
        except ValueError as exc:
            foreign.append(f"{name}: {exc}")
            continue
        why = _refusal(name, shard, digest=digest, real_dest=real_dest, owner=owner)
        if not why and good and shard.identity != good[0].identity:
            why = f"not of the same run as {good[0].path.name}"
        # (Exact names make this impossible; kept so no change of naming merges one twice.)
        if not why and any(g.index == shard.index for g in good):
            why = f"a second file for shard {shard.index}/{shard.identity.count}"
        if why:
            foreign.append(f"{name}: {why}")
        else:
            good.append(shard)
    count = good[0].identity.count if good else 0
    present = {shard.index for shard in good}
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in present]
    if foreign or missing or not good:
        parts = [f"missing shard(s) {', '.join(missing)}"] if missing else []
        if foreign:
            parts.append("refused (not of this run): " + " | ".join(foreign))
        raise ShardsIncomplete(
            f"{run_dir}: cannot merge: {'; '.join(parts) or 'no finished fetch shard files'}; "
            "run the missing shards (or move foreign files away) and merge again",
            missing=tuple(missing),
            foreign=tuple(foreign),
        )
    reported = {o.series_uid for shard in good for o in shard.outcomes}
    if len(reported) != len(series):
        raise ShardsIncomplete(
            f"{run_dir}: the shards account for {len(reported)} of the lock's {len(series)} "
            "series; run them again"
        )
    return good


def _write_pins(lock_path: Path, conn: sqlite3.Connection) -> None:
    """The images a shard pinned for series-only series, into the lock database, a series
    at a time."""
    rows = conn.execute("SELECT * FROM pins ORDER BY series_uid, sop_uid")
    current: list[LockedImage] = []
    db: LockDatabase | None = None
    try:
        for series_uid, sop, md5, size in rows:
            if current and current[0].series_uid != series_uid:
                db = db or LockDatabase(database_path(lock_path))
                db.fill_images(current[0].series_uid, current)
                current = []
            current.append(LockedImage(sop, series_uid, md5, size))
        if current:
            db = db or LockDatabase(database_path(lock_path))
            db.fill_images(current[0].series_uid, current)
    finally:
        if db is not None:
            db.close()


def merge_fetch(
    lock_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    shard_dir: str | os.PathLike[str],
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> FetchReport:
    """Write every shard's records into the destination's state; report the union.

    A record goes in only while its file is still the one its shard placed (the same stat
    key): a series with a file gone or changed since is reported failed, with what to do,
    and that file's record is left out. The pins of series-only series go into the lock
    database here, once. ``report.ok`` is True when every series of the lock is in place and
    verified.

    Raises:
        ShardsIncomplete: a shard is missing, or a file in ``shard_dir`` is from another run
            (or not a shard's file nbia-audit writes).
        LockNotFound, StoreError: the lock, the destination's state or a shard's file cannot
            be used.
        DownloadError: a fetch is writing the destination now.
    """
    started = time.monotonic()
    lock_path, dest, run_dir = Path(lock_path), Path(dest), Path(shard_dir)
    read_text_lock(lock_path)
    shards = _gather(lock_path, dest, run_dir)
    outcomes = {o.series_uid: o for shard in shards for o in shard.outcomes}
    stale: dict[str, _Stale] = {}
    columns = ", ".join(f.name for f in dataclasses.fields(FileRecord))
    # The destination's lock: no unsharded fetch writes while the records go in.
    with Workspace(dest), LocalState(dest) as state:
        for done, shard in enumerate(shards, start=1):
            try:
                conn = _connect_read_only(shard.path)
                try:
                    cursor = conn.execute(f"SELECT {columns} FROM files")  # noqa: S608
                    while rows := cursor.fetchmany(4096):  # a shard may carry millions
                        state.upsert_rows(_still_placed(dest, shard, rows, stale))
                    _write_pins(lock_path, conn)
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                raise StoreError(f"{shard.path}: cannot read the shard's file: {exc}") from exc
            if on_progress is not None:
                on_progress("merge", done, len(shards))
    for series_uid, what in stale.items():
        if series_uid in outcomes:
            outcomes[series_uid] = what.failed(outcomes[series_uid], lock_path, dest, run_dir)
    series = read_text_lock(lock_path).series
    ordered = tuple(outcomes[s.series_uid] for s in series)
    received = sum(shard.bytes_received for shard in shards)
    seconds = sum(shard.seconds for shard in shards) + time.monotonic() - started
    return FetchReport(lock_path, dest, shards[0].identity.layout, ordered, received, seconds)


@dataclasses.dataclass(slots=True)
class _Stale:
    """The files of one series that are no longer what a shard placed."""

    shard: _ShardFile
    first: str  # "PATH: what happened"
    count: int = 0

    def failed(
        self, outcome: SeriesOutcome, lock_path: Path, dest: Path, run_dir: Path
    ) -> SeriesOutcome:
        k, n = self.shard.index, self.shard.identity.count
        reason = (
            f"{self.count} file(s) gone or changed since shard {k}/{n} placed them (first: "
            f"{self.first}); run that shard again (nbia-audit fetch {lock_path} --dest {dest} "
            f"--shard {k}/{n} --shard-dir {run_dir}), then merge again"
        )
        return dataclasses.replace(
            outcome, status=FetchStatus.FAILED, reasons=(*outcome.reasons, reason)
        )


_PATH, _SERIES, _KEY = 0, 2, slice(3, 8)  # columns of a files row: path, ..., the stat key


def _still_placed(
    dest: Path, shard: _ShardFile, rows: list[Any], stale: dict[str, _Stale]
) -> list[Any]:
    """The rows whose files are still the ones the shard recorded (the same stat key); the
    others are noted in ``stale`` by series."""
    kept = []
    for row in rows:
        what = _change(dest, row)
        if not what:
            kept.append(row)
            continue
        noted = stale.setdefault(str(row[_SERIES]), _Stale(shard, f"{row[_PATH]}: {what}"))
        noted.count += 1
    return kept


def _change(dest: Path, row: Any) -> str:
    """What happened to a recorded file since its record ("" when nothing did)."""
    path = row[_PATH]
    parts = PurePosixPath(path).parts if isinstance(path, str) else ("..",)
    if not parts or ".." in parts or PurePosixPath(path).is_absolute():
        return "not a path inside the destination"
    try:
        key = stat_key(dest / path)
    except FileNotFoundError:
        return "gone"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return "" if tuple(key) == tuple(row[_KEY]) else "changed"

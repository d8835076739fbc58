"""``fetch`` split into shards and merged.

A shard fetches only its own series (:func:`~nbia_audit.shards.assign_series`, balanced by
the bytes the lock holds) and never writes the destination's state database or the lock
database: the records of what it placed, its outcomes and the images it pinned for
series-only series travel in its file ``RUN/fetch-K-of-N.db``, written under a temporary name
and renamed when complete. It locks and clears only its own work area, so shards on many
nodes never block or empty each other. The merge refuses foreign shards, stops (exit 3) on
missing ones, writes every shard's records and pins (the one writer) and reports the union.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbia_audit.archive.session import ArchiveTarget, archive_session
from nbia_audit.client.auth import Credentials
from nbia_audit.errors import ShardsIncomplete, SpecError, StoreError
from nbia_audit.fetch.layouts import Layout, parse_layout
from nbia_audit.fetch.placement import Workspace
from nbia_audit.fetch.run import FetchReport, SeriesOutcome, Target, fetch_into
from nbia_audit.findings import FetchStatus
from nbia_audit.models import LockedImage
from nbia_audit.shards import Shard, ShardResult, assign_series, shard_file_name
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.localstate import FileRecord, LocalState, state_migrations
from nbia_audit.store.sqlshape import first_difference
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.textlock import database_path, read_text_lock

__all__ = ["ShardResult", "fetch_shard", "merge_fetch"]

VERB = "fetch"
_EXT = "db"
_NAME = re.compile(r"fetch-(\d+)-of-(\d+)\.db")
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
    work = _work_folder(run_dir, shard)
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
        facts = _read_meta(final)
    except (ValueError, OSError):
        return []
    if facts.get("identity") != dataclasses.asdict(identity):
        return []
    return _read_only_records(final, shard_file=True)


def _work_folder(run_dir: Path, shard: Shard) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        unique = f"{os.getpid()}-{secrets.token_hex(4)}"
        work = run_dir / f".{VERB}-{shard.index}-of-{shard.count}.{unique}.tmp"
        work.mkdir()
    except OSError as exc:
        raise StoreError(f"{run_dir}: cannot write the shard's file there ({exc})") from exc
    return work


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
        _fsync(database)
        os.replace(database, final)
        _fsync(final.parent)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{final}: cannot write the shard's file: {exc}") from exc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_meta(path: Path) -> dict[str, Any]:
    """Raises: ValueError: not a finished fetch shard's file; OSError: unreadable."""
    if not path.is_file():
        raise ValueError("no such file")
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
        try:
            meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM shard")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ValueError(f"not a fetch shard's file ({exc})") from None
    if meta.get("format") != _FORMAT:
        raise ValueError(f"not a fetch shard's file of format {_FORMAT}")
    return meta


def _gather(lock_path: Path, dest: Path, run_dir: Path) -> list[tuple[dict[str, Any], Path]]:
    """Every shard of one fetch, checked: all N present, none foreign.

    Raises:
        ShardsIncomplete: a shard is missing, or a file is from another run.
    """
    try:
        names = sorted(os.listdir(run_dir))
    except OSError as exc:
        raise StoreError(f"{run_dir}: cannot list the run folder ({exc.strerror})") from None
    digest = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    real_dest = os.path.realpath(dest)
    good: list[tuple[dict[str, Any], Path]] = []
    foreign: list[str] = []
    for name in names:
        match = _NAME.fullmatch(name)
        if not match:
            continue
        path = run_dir / name
        try:
            meta = _read_meta(path)
        except (ValueError, OSError) as exc:
            foreign.append(f"{name}: {exc}")
            continue
        ident = meta["identity"]
        why = []
        if meta["index"] != int(match[1]) or ident["count"] != int(match[2]):
            why.append(f"it says it is shard {meta['index']}/{ident['count']}")
        if ident["lock_sha256"] != digest:
            why.append("it was made with another lock (or this lock changed since)")
        if ident["dest"] != real_dest:
            why.append(f"it fetched into another folder ({ident['dest']})")
        if good and ident != good[0][0]["identity"]:
            why.append(f"not of the same run as {good[0][1].name}")
        if why:
            foreign.append(f"{name}: {'; '.join(why)}")
        else:
            good.append((meta, path))
    count = good[0][0]["identity"]["count"] if good else 0
    present = {meta["index"] for meta, _ in good}
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
    return good


def merge_fetch(
    lock_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    shard_dir: str | os.PathLike[str],
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> FetchReport:
    """Write every shard's records into the destination's state; report the union.

    The pins of series-only series go into the lock database here, once. ``report.ok`` is
    True when every series of the lock is in place and verified.

    Raises:
        ShardsIncomplete: a shard is missing, or a file in ``shard_dir`` is from another run.
        LockNotFound, StoreError: the lock or the destination's state cannot be used.
        DownloadError: a fetch is writing the destination now.
    """
    started = time.monotonic()
    lock_path, dest, run_dir = Path(lock_path), Path(dest), Path(shard_dir)
    read_text_lock(lock_path)
    shards = _gather(lock_path, dest, run_dir)
    outcomes: dict[str, SeriesOutcome] = {}
    received = 0
    columns = ", ".join(f.name for f in dataclasses.fields(FileRecord))
    # The destination's lock: no unsharded fetch writes while the records go in.
    with Workspace(dest), LocalState(dest) as state:
        for done, (meta, path) in enumerate(shards, start=1):
            received += int(meta["bytes_received"])
            conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
            try:
                for uid, text in conn.execute("SELECT series_uid, outcome FROM outcomes"):
                    outcomes[uid] = _outcome(text)
                query = f"SELECT {columns} FROM files ORDER BY path"  # noqa: S608
                state.upsert_rows(list(conn.execute(query)))
                pins: dict[str, list[LockedImage]] = {}
                for series_uid, sop, md5, size in conn.execute(
                    "SELECT * FROM pins ORDER BY series_uid, sop_uid"
                ):
                    pins.setdefault(series_uid, []).append(LockedImage(sop, series_uid, md5, size))
            finally:
                conn.close()
            if pins:
                with LockDatabase(database_path(lock_path)) as db:
                    for series_uid, images in pins.items():
                        db.fill_images(series_uid, images)
            if on_progress is not None:
                on_progress("merge", done, len(shards))
    ident = shards[0][0]["identity"]
    series = read_text_lock(lock_path).series
    ordered = tuple(outcomes[s.series_uid] for s in series if s.series_uid in outcomes)
    if len(ordered) != len(series):
        raise ShardsIncomplete(
            f"{run_dir}: the shards account for {len(ordered)} of the lock's {len(series)} "
            "series; run them again"
        )
    seconds = sum(float(meta["seconds"]) for meta, _ in shards) + time.monotonic() - started
    return FetchReport(lock_path, dest, str(ident["layout"]), ordered, received, seconds)

"""``verify`` split into shards and merged: the same verdict as one process.

Every shard walks the whole tree (a listing is cheap) and reads only the files it owns: a
file belongs to the shard of its series when the copy's state records know its series, else
to :func:`~nbia_audit.shards.shard_of_path`. A shard never writes the copy's state database;
its facts and records travel in its file in the run folder
(:mod:`~nbia_audit.verify.shardfile`), written under a temporary name and renamed when
complete. The merge refuses foreign shards, stops (exit 3) on missing ones, walks the copy
once (a listing, nothing read) to check it is still the tree the shards saw, unions the facts
and judges them with the one judge, then writes the records (the one writer).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from nbia_audit.errors import ShardsIncomplete, SpecError, StoreError
from nbia_audit.findings import AuditReport
from nbia_audit.progress import ProgressCallback
from nbia_audit.shards import (
    Shard,
    ShardResult,
    assign_series,
    shard_file_name,
    shard_of_path,
    shard_work_folder,
)
from nbia_audit.store.localstate import LocalState
from nbia_audit.store.statkey import fs_identity
from nbia_audit.store.textlock import read_text_lock
from nbia_audit.verify import memo
from nbia_audit.verify.expectation import Expectation, load_expectation
from nbia_audit.verify.facts import build_facts
from nbia_audit.verify.judge import judge
from nbia_audit.verify.plan import Plan, Run
from nbia_audit.verify.pool import read_all
from nbia_audit.verify.read import Examined
from nbia_audit.verify.run import (
    _check_arguments,
    _check_root,
    _day_range,
    _iso,
    _lock_findings,
    _open_state,
    _own_files,
    _plan,
)
from nbia_audit.verify.shardfile import (
    Counters,
    Identity,
    ShardFacts,
    ShardParts,
    Walked,
    finish_file,
    open_shard,
    read_shard,
    record_rows,
    schema_of,
    walked_key,
    walked_paths,
)
from nbia_audit.verify.tally import Tally
from nbia_audit.verify.walk import Blocked, FileEntry, walk
from nbia_audit.verify.words import weakest

__all__ = ["ShardResult", "merge_verify", "verify_shard"]

VERB = "verify"
_EXT = "db"
# The one spelling of a shard's name: ASCII digits, no leading zero (re.ASCII: \d would take
# any Unicode digit, and int() reads them, so two names could claim one shard).
_NAME = re.compile(r"verify-([1-9][0-9]*)-of-([1-9][0-9]*)\.db", re.ASCII)
_LOOKS_LIKE = re.compile(r"verify-.*-of-.*", re.DOTALL)  # anything else so named: foreign
_SAMPLES = 3  # paths named in a refusal


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _lock_sha256(lock_path: Path) -> str:
    """Raises: LockNotFound: no lock there."""
    read_text_lock(lock_path)  # the one way a missing or bad lock is reported
    return hashlib.sha256(lock_path.read_bytes()).hexdigest()


def _series_owner(lock_path: Path, count: int) -> dict[str, int]:
    """Every locked series to its shard, by the byte counts the text lock holds."""
    series = read_text_lock(lock_path).series
    return assign_series(((s.series_uid, s.bytes) for s in series), count)


class _ShardRun(Run):
    """One shard's run: files of other shards are seen (walked) but neither read nor
    counted; records go to the shard's own file, never the copy's state."""

    def __init__(
        self,
        plan: Plan,
        root: str,
        sink: LocalState,
        ownership: tuple[Shard, dict[str, int]],
        tally: Tally,
        walked: Walked,
    ) -> None:
        super().__init__(plan, root, None, "", tally=tally)  # the copy's records, read only
        self.state = sink
        self.shard, self._owner = ownership  # this shard; series UID -> its shard's index
        self.walked = walked

    def owns(self, rel: str) -> bool:
        rec = self.record(rel)
        index = self._owner.get(rec.series) if rec is not None and rec.series else None
        if index is None:
            index = shard_of_path(rel, self.shard.count)
        return index == self.shard.index

    def admit(self, entry: FileEntry) -> Callable[[], Examined] | None:
        if not self.owns(entry.rel):
            return None
        self.walked.append(entry.rel, entry.key)
        return super().admit(entry)

    def blocked(self, rel: str, detail: str, io_error: bool, directory: bool = False) -> None:
        if not self.owns(rel):
            if directory:
                self.walk_complete = False  # no records below it may be forgotten
            return
        self.walked.append(rel, None)
        super().blocked(rel, detail, io_error, directory)


def _root_identity(root: Path) -> tuple[int, int]:
    """The copy's file system (f_fsid) and root folder inode: one path may name another copy
    (another mount, another node's disk).

    Raises:
        StoreError: the root cannot be examined.
    """
    try:
        st = os.stat(root)
    except OSError as exc:
        raise StoreError(f"{root}: cannot examine the copy ({exc.strerror})") from None
    return fs_identity(st.st_dev, root), st.st_ino


def _identity(
    lock_path: Path, root: Path, count: int, *, level: str = "full",
    fraction: float | None = None, seed: int | None = None, ignore: tuple[str, ...] = (),
) -> Identity:  # fmt: skip
    root_fs, root_inode = _root_identity(root)
    return Identity(
        _lock_sha256(lock_path), os.path.realpath(root), root_fs, root_inode, level, fraction,
        seed if fraction is not None else None, ignore, count,
    )  # fmt: skip


def verify_shard(
    lock_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    shard: Shard,
    shard_dir: str | os.PathLike[str],
    *,
    level: str = "full",
    sample: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
) -> ShardResult:
    """Check the files of ``root`` that ``shard`` owns; write its facts to ``shard_dir``.

    The shard's file is ``shard_dir/verify-K-of-N.db``, written under a temporary name and
    renamed when complete. Its facts are not a verdict: :func:`merge_verify` judges.

    Raises:
        ValueError: a bad level, fraction or worker count; ``sample`` without ``seed``
            (every shard must draw the same sample).
        LockNotFound, StoreError: the lock or the copy cannot be read, or the shard's file
            cannot be written.
    """
    _check_arguments(level, sample, workers)
    if sample is not None and seed is None:
        raise ValueError("a sharded --sample needs --seed: every shard must draw the same one")
    started_clock = time.monotonic()
    lock_path, root, run_dir = Path(lock_path), Path(root), Path(shard_dir)
    patterns = tuple(ignore)
    _refuse_inside(run_dir, root)
    root_text = _check_root(root)
    identity = _identity(
        lock_path, root, shard.count, level=level, fraction=sample, seed=seed, ignore=patterns
    )
    owner = _series_owner(lock_path, shard.count)
    work = shard_work_folder(run_dir, VERB, shard)
    final = run_dir / shard_file_name(VERB, shard, _EXT)
    try:
        with load_expectation(lock_path) as exp:
            plan = _plan(exp, level, sample, seed, _utc_now())
            sink = LocalState(work)  # the records one process would write, for the merge
            try:
                tally = Tally.create(work / "tally.db")
                walked = Walked(work / "walked.db")
                try:
                    run = _ShardRun(plan, root_text, sink, (shard, owner), tally, walked)
                    run.ignored = patterns
                    run.own_files = _own_files(lock_path, root)
                    read_all(run, walk(root_text, ignore=patterns), workers, on_progress)
                    run.finish_state()
                finally:
                    tally.close()
                    walked.close()
            finally:
                sink.close()
        counters = Counters(
            run.counts, run.files, run.unchanged_stat, run.stat_days, run.xxh3_days,
            run.walk_complete, workers or os.cpu_count() or 1,
        )  # fmt: skip
        for sink_only in ("forgotten", "recorded"):  # the sink's, not the copy's: the merge's
            counters.counts.pop(sink_only, None)
        seconds = time.monotonic() - started_clock
        parts = ShardParts(tally.path, sink.path, walked.path)
        finish_file(
            parts, final, index=shard.index, identity=identity, counters=counters,
            seconds=seconds,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    series = sum(1 for index in owner.values() if index == shard.index)
    return ShardResult(VERB, shard, final, series, run.files, seconds)


def _refuse_inside(run_dir: Path, root: Path) -> None:
    """Raises: SpecError: the run folder is inside the copy (its files would be walked)."""
    inside = Path(os.path.realpath(run_dir)).is_relative_to(os.path.realpath(root))
    if inside:
        raise SpecError(
            f"{run_dir} is inside the copy {root}: its files would be checked as the copy's; "
            "give a run folder outside it",
            path="--shard-dir",
        )


def _shard_files(run_dir: Path) -> tuple[dict[tuple[int, int], Path], list[str]]:
    """The finished shard files in ``run_dir``, by (K, N) from their names, and the files
    named like a shard in any other spelling (foreign: refused, never silently passed over)."""
    try:
        names = sorted(os.listdir(run_dir))
    except OSError as exc:
        raise StoreError(f"{run_dir}: cannot list the run folder ({exc.strerror})") from None
    found: dict[tuple[int, int], Path] = {}
    odd: list[str] = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match:
            index, count = int(match[1]), int(match[2])
            if index <= count and name == shard_file_name(VERB, Shard(index, count), _EXT):
                found[index, count] = run_dir / name
                continue
        if _LOOKS_LIKE.fullmatch(name):
            odd.append(f"{name!r}: not a shard file name nbia-audit writes (verify-K-of-N.db)")
    return found, odd


@functools.cache
def _written_schema() -> tuple[tuple[str, ...], ...]:
    """The schema of a shard's file exactly as :func:`finish_file` writes it: built once,
    empty, in a private folder."""
    with tempfile.TemporaryDirectory(prefix="nbia-audit-shard-schema-") as folder:
        work = Path(folder)
        Tally.create(work / "tally.db").close()
        records = LocalState(work)
        records.close()
        Walked(work / "walked.db").close()
        final = work / "shard.db"
        empty = Identity("", "", 0, 0, "full", None, None, (), 1)
        parts = ShardParts(work / "tally.db", records.path, work / "walked.db")
        finish_file(
            parts, final, index=1, identity=empty, counters=Counters(), seconds=0.0
        )  # fmt: skip
        conn = open_shard(final)
        try:
            return schema_of(conn)
        finally:
            conn.close()


def _read_one(path: Path) -> ShardFacts:
    """One shard's file, checked to be one nbia-audit wrote: a regular file, the schema
    exactly as written (no views, triggers or other objects), complete identity and counters.

    Raises:
        ValueError: it is not (the reason, in words).
    """
    try:
        mode = os.stat(path).st_mode  # a link to a shard file is that file
    except OSError as exc:
        raise ValueError(f"cannot be examined ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ValueError("not a regular file")
    try:
        conn = open_shard(path)
        try:
            if schema_of(conn) != _written_schema():
                raise ValueError(
                    "its tables are not those nbia-audit writes (missing, changed or extra "
                    "tables, columns, views, triggers or indexes; or another version's file)"
                )
            return read_shard(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ValueError(f"not a readable shard file ({exc})") from None


def _gather(lock_path: Path, root: Path, run_dir: Path) -> list[tuple[ShardFacts, Path]]:
    """Every shard of one run, read and checked: all N present, none foreign.

    Raises:
        ShardsIncomplete: a shard is missing, or a file is from another run.
    """
    files, foreign = _shard_files(run_dir)
    if not files and not foreign:
        raise ShardsIncomplete(
            f"{run_dir}: no finished verify shard files (verify-K-of-N.db); run the shards "
            "first (verify LOCK DIR --shard K/N --shard-dir RUN)"
        )
    lock_sha, real_root = _lock_sha256(lock_path), os.path.realpath(root)
    root_fs, root_inode = _root_identity(root)
    read: list[tuple[ShardFacts, Path]] = []
    for (index, count), path in sorted(files.items()):
        try:
            facts = _read_one(path)
        except ValueError as exc:
            foreign.append(f"{path.name}: {exc}")
            continue
        ident = facts.identity
        why = []
        if facts.index != index or ident.count != count:
            why.append(f"it says it is shard {facts.index}/{ident.count}")
        if ident.lock_sha256 != lock_sha:
            why.append("it was made with another lock (or this lock changed since)")
        if ident.root != real_root:
            why.append(f"it checked another copy ({ident.root})")
        elif (ident.root_fs, ident.root_inode) != (root_fs, root_inode):
            why.append(f"it checked another copy at {ident.root} (another file system or folder)")
        if why:
            foreign.append(f"{path.name}: {'; '.join(why)}")
        else:
            read.append((facts, path))
    # The first good shard sets the run's settings; any shard that disagrees is foreign.
    if read:
        first = read[0][0].identity
        for facts, path in list(read):
            diff = first.differences(facts.identity)
            if diff:
                foreign.append(
                    f"{path.name}: not of the same run as {read[0][1].name}: " + "; ".join(diff)
                )
                read.remove((facts, path))
    count = read[0][0].identity.count if read else 0
    present = {facts.index for facts, _ in read}
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in present]
    if foreign or missing or not read:
        parts = []
        if missing:
            parts.append(f"missing shard(s) {', '.join(missing)}")
        if foreign:
            parts.append("refused (not of this run): " + " | ".join(foreign))
        raise ShardsIncomplete(
            f"{run_dir}: cannot merge: {'; '.join(parts) or 'no usable shard'}; run the "
            "missing shards (or move foreign files away) and merge again",
            missing=tuple(missing),
            foreign=tuple(foreign),
        )
    return read


def merge_verify(
    lock_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    shard_dir: str | os.PathLike[str],
    *,
    on_progress: ProgressCallback | None = None,
    now: Callable[[], datetime] | None = None,
) -> AuditReport:
    """Judge the union of every shard's facts in ``shard_dir``: one run's report.

    The verdict is the one a single process would give over the same tree with the same
    settings. The shards' local-state records are written to the copy's state (when it can
    be written), by this process alone.

    Raises:
        ShardsIncomplete: a shard is missing, or a file in ``shard_dir`` is from another run
            (another lock, copy, level, sample, seed, ignore patterns or N).
        LockNotFound, StoreError: the lock or the copy cannot be read.
    """
    lock_path, root, run_dir = Path(lock_path), Path(root), Path(shard_dir)
    clock = now or _utc_now
    started = clock()
    root_text = _check_root(root)
    shards = _gather(lock_path, root, run_dir)
    try:
        _check_tree(root_text, run_dir, shards)
        with load_expectation(lock_path) as exp:
            return _merge(exp, lock_path, root, shards, started, clock, on_progress=on_progress)
    except sqlite3.Error as exc:  # a shard's file that changed under the merge, a full disk
        raise StoreError(f"{run_dir}: the merge cannot read or write its files ({exc})") from None


def _check_tree(root_text: str, run_dir: Path, shards: list[tuple[ShardFacts, Path]]) -> None:
    """The copy is still the tree the shards saw: every path in exactly one shard's walked
    set, no walked path gone, every file's stat key the one its shard recorded. One listing
    of the copy (a ``stat`` per file, nothing read), against the shards' walked sets held in
    a private SQLite file (never a set of every path in memory).

    Raises:
        ShardsIncomplete: the copy changed since (or between) the shards, or a shard walked
            another copy: it names the first few paths and the shards to run again.
    """
    ignore = shards[0][0].identity.ignore
    problems: list[str] = []
    rerun: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="nbia-audit-merge-") as folder:
        db = sqlite3.connect(os.path.join(folder, "walked.db"), uri=True)
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute(
                "CREATE TABLE walked (path TEXT PRIMARY KEY, shard TEXT NOT NULL, fs, inode,"
                " size, mtime_ns, ctime_ns)"
            )
            db.execute("CREATE TABLE seen (path TEXT PRIMARY KEY)")
            for facts, path in shards:
                label = f"shard {facts.index}/{facts.identity.count}"
                uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
                db.execute("ATTACH DATABASE ? AS shard", (uri,))
                try:
                    twice = db.execute(
                        "SELECT s.path, w.shard FROM shard.walked AS s JOIN main.walked AS w"
                        f" USING (path) LIMIT {_SAMPLES}"  # noqa: S608
                    ).fetchall()
                    for rel, other in twice:
                        problems.append(f"{rel!r} walked by both {other} and {label}")
                        rerun.update((other, label))
                    with db:
                        db.execute(
                            "INSERT OR IGNORE INTO main.walked SELECT path, ?, fs, inode, size,"
                            " mtime_ns, ctime_ns FROM shard.walked",
                            (label,),
                        )
                finally:
                    db.execute("DETACH DATABASE shard")
            pending: list[tuple[str]] = []
            for entry in walk(root_text, ignore=ignore):
                if len(problems) >= _SAMPLES:
                    break
                key = walked_key(entry.key if isinstance(entry, FileEntry) else None)
                row = db.execute(
                    "SELECT shard, fs, inode, size, mtime_ns, ctime_ns FROM walked WHERE path = ?",
                    (entry.rel,),
                ).fetchone()
                if row is None:
                    problems.append(f"{entry.rel!r} is in no shard (new, or ownership moved)")
                    rerun.add("every shard")
                elif tuple(row[1:]) != key:
                    what = "blocked" if isinstance(entry, Blocked) else "changed"
                    problems.append(f"{entry.rel!r} {what} since {row[0]} walked it")
                    rerun.add(row[0])
                pending.append((entry.rel,))
                if len(pending) >= 4096:
                    db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", pending)
                    pending = []
            db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", pending)
            if len(problems) < _SAMPLES:
                for rel, shard_name in db.execute(
                    "SELECT path, shard FROM walked WHERE path NOT IN (SELECT path FROM seen)"
                    f" LIMIT {_SAMPLES - len(problems)}"  # noqa: S608
                ):
                    problems.append(f"{rel!r} is gone since {shard_name} walked it")
                    rerun.add(shard_name)
        finally:
            db.close()
    if problems:
        raise ShardsIncomplete(
            f"{run_dir}: cannot merge: the copy is not the tree the shards saw: "
            + "; ".join(problems[:_SAMPLES])
            + f"; run {', '.join(sorted(rerun))} again (each over the copy as it is now) and"
            " merge again",
            foreign=tuple(sorted(rerun)),
        )


def _merge(
    exp: Expectation,
    lock_path: Path,
    root: Path,
    shards: list[tuple[ShardFacts, Path]],
    started: datetime,
    clock: Callable[[], datetime],
    *,
    on_progress: ProgressCallback | None = None,
) -> AuditReport:
    root_text = str(root)  # checked by the caller (_check_root)
    ident = shards[0][0].identity
    plan = _plan(exp, ident.level, ident.fraction, ident.seed, started)
    memo.forget(root)  # the records a stat pass relies on change here
    state, state_note = _open_state(root)
    try:
        run = Run(plan, root_text, state, state_note)
        try:
            run.ignored = ident.ignore
            counters = Counters(workers=0)
            for done, (facts, path) in enumerate(shards, start=1):
                counters.add(facts.counters)
                # The tally orders every image's copies by path: the union is one process's.
                run.tally.absorb(path)
                conn = open_shard(path)
                try:
                    for rel in walked_paths(conn):  # the union is the whole walk
                        run.seen_paths.add(rel)
                    if state is not None:
                        for rows in record_rows(conn):
                            state.upsert_rows(rows)
                            counters.counts["recorded"] += len(rows)
                finally:
                    conn.close()
                if on_progress is not None:
                    on_progress("merge", done, len(shards))
            _adopt(run, counters)
            verdict = judge(exp, run.tally, root_text, plan.sample)
            complete = run.tally.complete
            run.finish_state()  # forgets records of files no shard found (complete walks)
        finally:
            run.tally.close()
    finally:
        if state is not None:
            state.close()
    report_facts = build_facts(run, verdict, str(root), counters.workers)
    report_facts["merged_from_shards"] = ident.count
    return AuditReport(
        command="verify",
        lock_path=str(lock_path),
        root_digest=exp.header.root_digest,
        started_at=_iso(started),
        finished_at=_iso(clock()),
        findings=_lock_findings(exp) + verdict.findings,
        series=verdict.series,
        complete=complete and not verdict.unprovable,
        facts=report_facts,
        proof=weakest(s.proof for s in verdict.series),
        proven_on=_day_range(run.stat_days | run.xxh3_days),
    )


def _adopt(run: Run, counters: Counters) -> None:
    """The merged counters, in the run the facts are built from."""
    run.counts = counters.counts
    run.files = counters.files
    run.unchanged_stat = counters.unchanged_stat
    run.stat_days = counters.stat_days
    run.xxh3_days = counters.xxh3_days
    run.walk_complete = counters.walk_complete

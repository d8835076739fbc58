"""``verify``: is this folder exactly the locked dataset?

Walks the copy in sorted order, maps files to locked images by the SOPInstanceUID in their
DICOM header (or, equivalently and faster, by their content MD5 when it is the lock's MD5 of
an image whose SOPInstanceUID the file's header holds; files whose header cannot be read are
identified by content alone), and judges them against the lock
(:mod:`nbia_audit.verify.judge`). Three levels decide how a file's content is known:

* ``full``: MD5 of every file, the authority against the lock's archive MD5s;
* ``quick``: xxh3-128 of every file against the fingerprint recorded at its last full pass
  in the local state database (catches silent bit rot even when stat is unchanged);
* ``stat``: trusts an unchanged device, inode, size, mtime and ctime, and says only
  "unchanged since it was verified on <date>".

At ``quick`` and ``stat``, files new or changed since the last pass are hashed in full. A
full hash of a file is recorded in the local state (``<root>/.nbia-audit/state.db``) so the
cheaper levels have something to compare with. ``--sample`` hashes a seeded random fraction
of the unchanged locked images, every new or changed file, and still checks every file's
presence (the walk is cheap). A state record is trusted only on the device and inode it was
taken on (a state database copied with the tree proves nothing).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from nbia_audit.errors import StoreError
from nbia_audit.findings import AuditReport, Finding, FindingKind
from nbia_audit.progress import ProgressCallback
from nbia_audit.store.localstate import LocalState
from nbia_audit.verify import memo
from nbia_audit.verify.expectation import Expectation, load_expectation
from nbia_audit.verify.facts import build_facts
from nbia_audit.verify.judge import judge
from nbia_audit.verify.plan import LEVELS, Plan, Run
from nbia_audit.verify.pool import read_all
from nbia_audit.verify.sampling import Sample, new_seed
from nbia_audit.verify.walk import Blocked, FileEntry, walk
from nbia_audit.verify.words import STAT, weakest

__all__ = ["LEVELS", "verify_copy"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def verify_copy(
    lock_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    level: str = "full",
    sample: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
    now: Callable[[], datetime] | None = None,
) -> AuditReport:
    """Verify the copy of a locked dataset in ``root`` against the lock at ``lock_path``.

    ``level`` is ``full``, ``quick`` or ``stat``; ``sample`` (0 < fraction <= 1, not with
    ``stat``) hashes a seeded random fraction of the locked images (``seed`` None: a fresh
    one, reported); ``ignore`` holds glob patterns of paths to leave out. Findings are
    values in the report; the report's ``facts`` say what each level proved.

    Raises:
        ValueError: a bad level, fraction or worker count.
        LockNotFound: no lock at ``lock_path``.
        StoreError: the lock cannot be read, or ``root`` is not a readable directory.
    """
    _check_arguments(level, sample, workers)
    lock_path, root = Path(lock_path), Path(root)
    clock = now or _utc_now
    started = clock()
    # The expectation's images and the run's tally live in private temporary SQLite files:
    # closed (and removed) however the run ends.
    with load_expectation(lock_path) as exp:
        return _verify(
            exp, lock_path, root, started, clock, level=level, sample=sample, seed=seed,
            workers=workers, ignore=ignore, on_progress=on_progress,
        )  # fmt: skip


def _verify(
    exp: Expectation,
    lock_path: Path,
    root: Path,
    started: datetime,
    clock: Callable[[], datetime],
    *,
    level: str = "full",
    sample: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
) -> AuditReport:
    root_text = _check_root(root)
    own_files, patterns = _own_files(lock_path, root), tuple(ignore)
    items: Iterable[FileEntry | Blocked]
    survey: memo.Survey | None = None
    # A memo of a clean pass speaks for the lock pair it was made with; never for a pair
    # whose database no longer proves itself.
    if level == "stat" and sample is None and not exp.database_rejected:
        # The walk is the one unavoidable cost; an unchanged tree needs nothing else. It is
        # digested as it streams to a scratch file, replayed only when the memo misses.
        survey = memo.Survey(walk(root_text, ignore=patterns), started)
        memo_key = memo.setting(lock_path, exp.header.root_digest, patterns)
        remembered = memo.recall(root, memo_key, survey.tree)
        if remembered is not None:
            survey.discard()
            return _from_memo(remembered, _iso(started), _iso(clock()))
        items = survey.replay()
    else:
        memo.forget(root)  # this pass changes the records a stat pass relies on
        items = walk(root_text, ignore=patterns)
    plan = _plan(exp, level, sample, seed, started)
    state, state_note = _open_state(root)
    try:
        run = Run(plan, root_text, state, state_note)
        try:
            run.ignored = patterns
            run.own_files = own_files
            read_all(run, items, workers, on_progress)
            verdict = judge(exp, run.tally, root_text, plan.sample)
            complete = run.tally.complete
            run.finish_state()
        finally:
            run.tally.close()
    finally:
        if state is not None:
            state.close()
    finished = clock()
    report = AuditReport(
        command="verify",
        lock_path=str(lock_path),
        root_digest=exp.header.root_digest,
        started_at=_iso(started),
        finished_at=_iso(finished),
        findings=_lock_findings(exp) + verdict.findings,
        series=verdict.series,
        # An image that nothing can prove (no usable archive MD5) leaves the check incomplete.
        complete=complete and not verdict.unprovable,
        facts=build_facts(run, verdict, str(root), workers or os.cpu_count() or 1),
        proof=weakest(s.proof for s in verdict.series),
        proven_on=_day_range(run.stat_days | run.xxh3_days),
    )
    if survey is not None:
        if survey.settled:
            memo.remember(root, memo_key, survey.tree, report)
        else:
            memo.forget(root)  # a file written just now may change again unseen
    return report


def _lock_findings(exp: Expectation) -> tuple[Finding, ...]:
    """The lock pair's own finding: a database that failed its proof (the copy was then
    checked against the text lock's series hashes alone)."""
    if not exp.database_rejected:
        return ()
    return (
        Finding(
            kind=FindingKind.LOCK_DATABASE_REJECTED,
            detail=exp.database_rejected
            + "; the copy was checked against the text lock's series hashes alone",
        ),
    )


def _from_memo(remembered: AuditReport, started: str, finished: str) -> AuditReport:
    facts = dict(remembered.facts)
    facts["memo"] = (
        f"every file's stat key is as at the clean stat pass of {remembered.finished_at}; "
        "that pass's verdict stands and nothing else was read"
    )
    # Nothing was read now: whatever that pass proved, this one knows only the stat data.
    proven_on = remembered.proven_on or remembered.started_at[:10]
    series = tuple(
        dataclasses.replace(s, proof=weakest((s.proof, STAT))) for s in remembered.series
    )
    return dataclasses.replace(
        remembered, started_at=started, finished_at=finished, facts=facts, series=series,
        proof=weakest((remembered.proof, STAT)), proven_on=proven_on,
    )  # fmt: skip


def _day_range(days: set[str]) -> str:
    known = sorted(d for d in days if d)
    if not known:
        return ""
    return known[0] if known[0] == known[-1] else f"{known[0]} .. {known[-1]}"


def _plan(
    exp: Expectation, level: str, sample: float | None, seed: int | None, started: datetime
) -> Plan:
    if sample is not None and seed is None:
        seed = new_seed()
    return Plan(
        level=level,
        sample=Sample(sample, seed or 0) if sample is not None else None,
        fraction=sample,
        seed=seed if sample is not None else None,
        # To the microsecond: the racily-clean rule compares it with mtimes.
        stamp=started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        exp=exp,
    )


def _check_arguments(level: str, sample: float | None, workers: int | None) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if sample is not None and not 0 < sample <= 1:
        raise ValueError(f"sample must be a fraction in (0, 1], not {sample}")
    if sample is not None and level == "stat":
        raise ValueError("--sample hashes a fraction of the images; the stat level hashes none")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_root(root: Path) -> str:
    """Raises: StoreError: ``root`` is missing, not a directory, or unlistable."""
    try:
        with os.scandir(root):
            pass
    except FileNotFoundError:
        raise StoreError(f"{root}: no such directory; give the folder holding the copy") from None
    except NotADirectoryError:
        raise StoreError(f"{root}: not a directory; give the folder holding the copy") from None
    except OSError as exc:
        raise StoreError(f"{root}: cannot list the copy ({exc.strerror})") from None
    return str(root)


def _open_state(root: Path) -> tuple[LocalState | None, str]:
    # A read-only copy (a mounted archive, a reader's CD) still verifies: without a state
    # database every file is simply hashed in full, and the report says so.
    try:
        return LocalState(root), ""
    except StoreError as exc:
        return None, f"not used: {exc}"


def _own_files(lock_path: Path, root: Path) -> frozenset[str]:
    """Relative paths of the lock pair (and its spec) when they live inside the copy.

    Only these: what a lock write leaves behind (``.new``, ``.old``, a journal) is judged
    like any other file, and so is one of these names once it holds DICOM.
    """
    try:
        lock_rel = lock_path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return frozenset()
    parent = lock_rel.parent
    names = [lock_rel.name, lock_rel.name + ".db", lock_rel.stem + ".yaml", lock_rel.stem + ".yml"]
    return frozenset((parent / n).as_posix().removeprefix("./") for n in names)

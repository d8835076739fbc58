"""The ``fetch`` verb: materialise exactly the locked bytes, proving each image on the way in.

``fetch_dataset`` reads the lock, skips the series already in place and verified (resume),
checks the free disk space, then runs ``workers`` series jobs (fetchseries.py) over the rest.
Each series is streamed to ``DEST/.nbia-audit/tmp``, checked image by image against the
lock and the archive, and only then moved into place atomically and recorded in the local
state (``DEST/.nbia-audit/state.db``) so ``verify`` can be fast later. A series that cannot
be verified after its retries is reported with the reasons and none of its files placed.
After ``kill -9`` at any moment, running fetch again finishes the job: the temporary area
is emptied, placed series are recognised, and every path only ever held a verified file.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nbia_audit.archive.protocol import Archive
from nbia_audit.client.download import StreamLimits
from nbia_audit.errors import SpecError
from nbia_audit.fetch.diskspace import check_free_space, space_needed
from nbia_audit.fetch.layouts import Layout, image_paths, parse_layout
from nbia_audit.fetch.placement import Workspace
from nbia_audit.fetch.resume import PathClaims, check_placed, records_by_sop
from nbia_audit.fetch.series import (
    FetchInterrupted,
    ImagePinner,
    ProgressTracker,
    RecordSink,
    SeriesOutcome,
    SeriesRetry,
    SeriesRun,
    fetch_series,
)
from nbia_audit.findings import FetchStatus
from nbia_audit.models import LockedImage, LockedSeries, LockHeader
from nbia_audit.progress import ProgressCallback
from nbia_audit.store.localstate import FileRecord, LocalState
from nbia_audit.store.reader import read_lock

__all__ = [
    "FetchReport",
    "SeriesOutcome",
    "SeriesRetry",
    "StreamLimits",
    "Target",
    "fetch_dataset",
    "fetch_into",
]


@dataclass(frozen=True, slots=True)
class FetchReport:
    """What a fetch did, series by series in lock order."""

    lock_path: Path
    dest: Path
    layout: str
    series: tuple[SeriesOutcome, ...]
    bytes_received: int  # ZIP bytes downloaded, retries included
    seconds: float

    def _with(self, status: FetchStatus) -> tuple[SeriesOutcome, ...]:
        return tuple(s for s in self.series if s.status == status)

    @property
    def fetched(self) -> tuple[SeriesOutcome, ...]:
        return self._with(FetchStatus.FETCHED)

    @property
    def skipped(self) -> tuple[SeriesOutcome, ...]:
        return self._with(FetchStatus.SKIPPED)

    @property
    def failed(self) -> tuple[SeriesOutcome, ...]:
        return self._with(FetchStatus.FAILED)

    @property
    def ok(self) -> bool:
        """True when every selected series is in place and verified."""
        return not self.failed

    @property
    def bytes_placed(self) -> int:
        return sum(s.bytes for s in self.fetched)


@dataclass(frozen=True, slots=True)
class _Plan:
    header: LockHeader
    series: tuple[LockedSeries, ...]  # selected, lock order
    every_series: tuple[LockedSeries, ...]
    # The lock's images by series, read one series at a time: never all of them at once.
    images: Mapping[str, tuple[LockedImage, ...]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one fetch writes: its work area (locked), what earlier runs recorded there, and
    where the records of what it places go (the destination's state, or a shard's file)."""

    workspace: Workspace
    records: Sequence[FileRecord]
    sink: RecordSink
    pin_images: ImagePinner | None = None  # None: series-only pins go to the lock database


def fetch_dataset(
    lock_path: Path,
    dest: Path,
    archive: Archive,
    *,
    layout: str | Layout = "classic",
    workers: int = 2,
    series: Iterable[str] | None = None,
    retry: SeriesRetry | None = None,
    limits: StreamLimits | None = None,
    on_progress: ProgressCallback | None = None,
    on_series: Callable[[SeriesOutcome], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> FetchReport:
    """Fetch the series of the lock at ``lock_path`` into ``dest``, verified, from ``archive``.

    ``series`` limits the fetch to these SeriesInstanceUIDs. ``on_progress(stage, done,
    total)`` receives ``check`` (series examined for resume), ``series`` and ``bytes``;
    ``on_series`` receives each series' outcome as it ends. Both are called one at a time.
    ``limits`` bounds each series download (total deadline, minimum throughput); a download
    that breaks them is cut, retried under ``retry``, then reported as a failed series.

    Raises:
        SpecError: a bad layout, a layout that maps two images to one path, a series not
            in the lock, or ``workers`` < 1.
        StoreError: the lock or the local state cannot be read or written.
        DownloadError: the destination cannot be used (another fetch, disk full, links).
        ApiUnavailable, AuthError, ApiUnauthorized: the archive cannot be used at all.
    """
    with Workspace(dest) as workspace, LocalState(dest) as state:
        target = Target(workspace, list(state.records()), state)
        return fetch_into(
            lock_path, dest, archive, target, layout=layout, workers=workers, series=series,
            retry=retry, limits=limits, on_progress=on_progress, on_series=on_series, now=now,
        )  # fmt: skip


def fetch_into(
    lock_path: Path,
    dest: Path,
    archive: Archive,
    target: Target,
    *,
    layout: str | Layout = "classic",
    workers: int = 2,
    series: Iterable[str] | None = None,
    retry: SeriesRetry | None = None,
    limits: StreamLimits | None = None,
    on_progress: ProgressCallback | None = None,
    on_series: Callable[[SeriesOutcome], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> FetchReport:
    """:func:`fetch_dataset` into a :class:`Target` the caller holds (a shard holds its own).

    Raises: as :func:`fetch_dataset`.
    """
    started = time.monotonic()
    if workers < 1:
        raise SpecError("must be at least 1", path="--workers")
    chosen = layout if isinstance(layout, Layout) else parse_layout(layout)
    plan = _read_plan(lock_path, series)
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    records = target.records
    _check_static_layout(dest, chosen, plan)
    todo, skipped = _sort_out(dest, chosen, plan, target.sink, records, clock, on_progress)
    check_free_space(dest, space_needed([s.bytes for s in todo], workers), len(todo))
    stop = threading.Event()
    run = SeriesRun(
        archive=archive,
        lock_path=lock_path,
        lock_root=plan.header.root_digest,
        layout=chosen,
        workspace=target.workspace,
        state=target.sink,
        claims=PathClaims(dest, records),
        retry=retry or SeriesRetry(),
        progress=ProgressTracker(todo, stop, on_progress, on_series),
        stop=stop,
        now=clock,
        limits=limits or StreamLimits(),
        pin_images=target.pin_images,
    )
    done = _run_workers(run, todo, plan.images, workers)
    outcomes = {**{s.series_uid: s for s in skipped}, **done}
    ordered = tuple(outcomes[s.series_uid] for s in plan.series)
    label = chosen.template if chosen.name == "template" else chosen.name
    received = run.progress.bytes_received
    return FetchReport(lock_path, dest, label, ordered, received, time.monotonic() - started)


def _read_plan(lock_path: Path, wanted: Iterable[str] | None) -> _Plan:
    """Raises: LockNotFound, StoreError: the lock pair is missing or does not prove itself."""
    lock = read_lock(lock_path)
    header, every = lock.header, lock.series
    selected = every
    if wanted is not None:
        names = set(wanted)
        unknown = sorted(names - {s.series_uid for s in every})
        if unknown:
            raise SpecError(
                f"not in the lock: {', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""),
                path="--series",
                hint=f"the lock {lock_path} pins {len(every)} series",
            )
        selected = tuple(s for s in every if s.series_uid in names)
    return _Plan(header, selected, every, lock.images)


def _check_static_layout(dest: Path, layout: Layout, plan: _Plan) -> None:
    """When the lock alone fixes every path, refuse a layout that maps two images to one."""
    if not layout.static:
        return
    claims = PathClaims(dest)
    for series in plan.every_series:
        pinned = plan.images.get(series.series_uid, ())
        files = {i.sop_uid: Path() for i in pinned}  # a static layout reads no header
        collisions = claims.claim(image_paths(layout, series, files))
        if collisions:
            raise SpecError(
                f"the layout puts two images at one path: {collisions[0]}",
                path="--layout",
                hint="include {sop_uid} (or another field that tells images apart)",
            )


def _sort_out(
    dest: Path,
    layout: Layout,
    plan: _Plan,
    state: RecordSink,
    records: Sequence[FileRecord],
    now: Callable[[], dt.datetime],
    on_progress: ProgressCallback | None,
) -> tuple[list[LockedSeries], list[SeriesOutcome]]:
    """Split the selected series into those to fetch and those already in place."""
    known = records_by_sop(records)
    stamp = now().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    todo: list[LockedSeries] = []
    skipped: list[SeriesOutcome] = []
    for index, series in enumerate(plan.series, start=1):
        images = plan.images.get(series.series_uid, ())
        placed = check_placed(dest, series, images, layout, known, stamp)
        if placed.done:
            state.upsert(placed.refreshed)
            skipped.append(
                SeriesOutcome(
                    series.series_uid,
                    series.collection,
                    series.patient_id,
                    FetchStatus.SKIPPED,
                    images=len(images),
                    bytes=placed.bytes,
                )
            )
        else:
            todo.append(series)
        if on_progress is not None:
            on_progress("check", index, len(plan.series))
    return todo, skipped


def _work(
    run: SeriesRun,
    queue: deque[LockedSeries],
    images: Mapping[str, tuple[LockedImage, ...]],
    outcomes: dict[str, SeriesOutcome],
    errors: list[BaseException],
) -> None:
    """One worker thread: take series off the queue until it is empty or the run stops."""
    while not run.stop.is_set():
        try:
            series = queue.popleft()  # deque.popleft is atomic
        except IndexError:
            return
        try:
            outcome = fetch_series(run, series, images.get(series.series_uid, ()))
        except FetchInterrupted:
            return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)
            run.stop.set()
            return
        outcomes[series.series_uid] = outcome
        run.progress.finish(outcome)


def _run_workers(
    run: SeriesRun,
    todo: Sequence[LockedSeries],
    images: Mapping[str, tuple[LockedImage, ...]],
    workers: int,
) -> dict[str, SeriesOutcome]:
    """Fetch ``todo`` with ``workers`` threads; the first environment failure stops all."""
    queue = deque(todo)
    outcomes: dict[str, SeriesOutcome] = {}
    errors: list[BaseException] = []

    def work() -> None:
        _work(run, queue, images, outcomes, errors)

    run.progress.start()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(todo)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        # Ctrl-C: stop downloads at their next chunk; whatever was placed stays verified.
        run.stop.set()
        for thread in threads:
            thread.join(5.0)
        raise
    if errors:
        raise errors[0]
    return outcomes

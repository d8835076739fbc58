"""Fetch one series: download, check, pin (series-only locks), place, record; with retries.

One attempt streams ``getImageWithMD5Hash`` into a work folder under
``DEST/.nbia-audit/tmp``, checks the ZIP against the lock and the archive (ziptools), and
only when every image verified claims the layout's paths, fills the lock database for a
series pinned by hash only, moves the images into place atomically and records them in the
local state. A failed attempt leaves nothing behind; the series is tried again after a
backoff, and after the last attempt it is reported with the reasons, none of its files placed.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from nbia_audit.archive.protocol import Archive
from nbia_audit.client.download import StreamLimits
from nbia_audit.client.records import SeriesSize
from nbia_audit.crashpoints import crashpoint
from nbia_audit.errors import (
    ApiBadRequest,
    ApiError,
    ApiUnauthorized,
    ApiUnavailable,
    AuthError,
    DownloadError,
)
from nbia_audit.fetch.layouts import Layout, image_paths
from nbia_audit.fetch.placement import Workspace
from nbia_audit.fetch.resume import PathClaims
from nbia_audit.fetch.zipcheck import ExtractedImage, SeriesExpectation, check_series_zip
from nbia_audit.findings import FetchStatus
from nbia_audit.models import LockedImage, LockedSeries
from nbia_audit.progress import BytesCallback, ProgressCallback
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.localstate import FileRecord, LocalState, StatKey
from nbia_audit.store.textlock import database_path

__all__ = [
    "FetchInterrupted",
    "ProgressTracker",
    "SeriesOutcome",
    "SeriesRetry",
    "SeriesRun",
    "fetch_series",
]

_ZIP_SLACK = 256 * 1024 * 1024  # extracted bytes allowed beyond the lock's size


class FetchInterrupted(Exception):
    """The run is stopping (Ctrl-C, or another series hit an environment failure)."""


@dataclass(frozen=True, slots=True)
class SeriesRetry:
    """How often a series that failed to verify is tried again, and how long to wait.

    ``attempts`` counts every try; before retry *n* the wait is random in
    ``[d/2, d]`` with ``d = min(cap, base * 2**(n-1))`` seconds.
    """

    attempts: int = 3
    base: float = 2.0
    cap: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or min(self.base, self.cap) < 0:
            raise ValueError("SeriesRetry needs attempts >= 1 and delays >= 0")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.cap, self.base * 2.0 ** (retry - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class SeriesOutcome:
    """What happened to one series: ``fetched``, ``skipped`` (already in place) or ``failed``."""

    series_uid: str
    collection: str
    patient_id: str
    status: FetchStatus
    images: int = 0
    bytes: int = 0  # image bytes placed (fetched) or found in place (skipped)
    attempts: int = 0
    reasons: tuple[str, ...] = ()
    filled: bool = False  # this fetch pinned the series' images into the lock database


class ProgressTracker:
    """Counts series and bytes across worker threads and reports them in order.

    Callbacks run under one lock, so they need not be thread-safe. Bytes count toward the
    lock's size of a series (a ZIP is not exactly its images' size), so the total is reached
    exactly when the last series ends.
    """

    def __init__(
        self,
        series: Sequence[LockedSeries],
        stop: threading.Event,
        on_progress: ProgressCallback | None = None,
        on_series: Callable[[SeriesOutcome], None] | None = None,
    ) -> None:
        self.total_series = len(series)
        self.total_bytes = sum(s.bytes for s in series)
        self.bytes_received = 0  # every ZIP byte downloaded, retries included
        self._expected = {s.series_uid: s.bytes for s in series}
        self._in_flight: dict[str, int] = {}
        self._finished_series = 0
        self._finished_bytes = 0
        self._stop = stop
        self._on_progress = on_progress
        self._on_series = on_series
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._emit()

    def counter(self, series_uid: str) -> BytesCallback:
        """An ``on_bytes`` callback for one download; it stops the download on request."""
        expected = self._expected.get(series_uid, 0)

        def count(n: int) -> None:
            crashpoint("fetch:bytes-received")  # mid-download
            if self._stop.is_set():
                raise FetchInterrupted
            with self._lock:
                self.bytes_received += max(n, 0)
                self._in_flight[series_uid] = self._in_flight.get(series_uid, 0) + n
                self._in_flight[series_uid] = min(self._in_flight[series_uid], expected)
                self._emit_bytes()

        return count

    def restart(self, series_uid: str) -> None:
        with self._lock:
            self._in_flight[series_uid] = 0

    def finish(self, outcome: SeriesOutcome) -> None:
        with self._lock:
            self._in_flight.pop(outcome.series_uid, None)
            self._finished_series += 1
            self._finished_bytes += self._expected.get(outcome.series_uid, 0)
            if self._on_series is not None:
                self._on_series(outcome)
            self._emit()

    def _emit(self) -> None:
        if self._on_progress is not None:
            self._on_progress("series", self._finished_series, self.total_series)
        self._emit_bytes()

    def _emit_bytes(self) -> None:
        if self._on_progress is not None:
            done = self._finished_bytes + sum(max(v, 0) for v in self._in_flight.values())
            self._on_progress("bytes", done, self.total_bytes)


@dataclass(slots=True)
class SeriesRun:
    """Everything the series jobs of one fetch share."""

    archive: Archive
    lock_path: Path
    lock_root: str
    layout: Layout
    workspace: Workspace
    state: LocalState
    claims: PathClaims
    retry: SeriesRetry
    progress: ProgressTracker
    stop: threading.Event
    now: Callable[[], dt.datetime]
    limits: StreamLimits = field(default_factory=StreamLimits)
    rng: random.Random = field(default_factory=random.Random)
    fill_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class _Failure:
    problems: tuple[str, ...]
    final: bool = False  # retrying cannot help
    error: Exception | None = None  # raise this if the last attempt fails with it


def fetch_series(
    run: SeriesRun, series: LockedSeries, images: Sequence[LockedImage]
) -> SeriesOutcome:
    """Fetch ``series`` into place, retrying under ``run.retry``.

    Raises:
        FetchInterrupted: the run is stopping.
        ApiUnavailable, AuthError: the archive cannot be used at all.
        ApiUnauthorized: the archive refused every attempt's fresh token.
        DownloadError: the destination cannot be written (disk full, permissions).
        StoreError: the lock database or the local state cannot be written.
        SpecError: the layout cannot name this series' files.
    """
    failure = _Failure(("not attempted",))
    attempt = 0
    for attempt in range(1, run.retry.attempts + 1):
        if attempt > 1 and run.stop.wait(run.retry.delay(attempt - 1, run.rng)):
            raise FetchInterrupted
        if run.stop.is_set():
            raise FetchInterrupted
        run.progress.restart(series.series_uid)
        result = _attempt_guarded(run, series, images)
        if isinstance(result, SeriesOutcome):
            return replace(result, attempts=attempt)
        failure = result
        if failure.final:
            break
    if failure.error is not None:
        raise failure.error
    return SeriesOutcome(
        series.series_uid,
        series.collection,
        series.patient_id,
        FetchStatus.FAILED,
        attempts=attempt,
        reasons=failure.problems,
    )


def _attempt_guarded(
    run: SeriesRun, series: LockedSeries, images: Sequence[LockedImage]
) -> SeriesOutcome | _Failure:
    """One attempt; archive trouble specific to this series becomes a failure value."""
    try:
        return _attempt(run, series, images)
    except (ApiUnavailable, AuthError):
        raise  # the archive cannot be used at all: stop the run (exit 3)
    except ApiUnauthorized as exc:
        # A renewed token refused once can be a race with its expiry (protocol §4.3); a
        # refusal on every attempt means the account may not read this data: stop the run.
        return _Failure((str(exc),), error=exc)
    except ApiBadRequest as exc:
        # NBIA's answer for an unknown, hidden or forbidden series (protocol §2.1).
        return _Failure((f"the archive refused to serve it: {exc}",), final=True)
    except ApiError as exc:
        return _Failure((str(exc),))


def _attempt(
    run: SeriesRun, series: LockedSeries, images: Sequence[LockedImage]
) -> SeriesOutcome | _Failure:
    workdir = run.workspace.workdir("series")
    try:
        size = run.archive.series_size(series.series_uid)
        zip_path = workdir / "series.zip"
        expectation = _expectation(series, images, size)
        on_bytes = _capped(run.progress.counter(series.series_uid), series, expectation)
        try:
            run.archive.download_series(
                series.series_uid, zip_path, on_bytes=on_bytes, limits=run.limits
            )
        except _TooLarge as exc:
            return _Failure((str(exc),))  # a misbehaving server must not fill the disk
        except DownloadError as exc:
            if isinstance(exc.__cause__, OSError):
                raise  # the destination could not be written: no series can succeed
            # The stream kept breaking, or was cut for its deadline or throughput: try again
            # later; the other series go on meanwhile.
            return _Failure((str(exc),))
        try:
            check = check_series_zip(zip_path, expectation, workdir)
        except OSError as exc:
            raise DownloadError(f"{workdir}: cannot extract the series ({exc})") from exc
        zip_path.unlink()  # free its space before placing
        if not check.ok:
            return _Failure(check.problems)
        return _place(run, series, check.images)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _TooLarge(Exception):
    """The archive sent far more bytes for a series than the lock says it holds."""


def _capped(
    count: BytesCallback, series: LockedSeries, expectation: SeriesExpectation
) -> BytesCallback:
    """Count bytes as they arrive, and stop a download that outgrows the series.

    The ZIP's declared sizes are checked only once it is complete; without this cap a
    misbehaving server could fill the disk first. A restarted attempt reports the bytes it
    discarded as a negative count, so the running total is what is on disk.
    """
    if series.bytes <= 0:
        return count  # size unknown to the lock: the ZIP's declared sizes still bound it
    received = 0

    def capped(n: int) -> None:
        nonlocal received
        received += n
        if received > expectation.max_bytes:
            raise _TooLarge(
                f"the archive sent more than {expectation.max_bytes} bytes for a series the "
                f"lock says holds {series.bytes}; download stopped"
            )
        count(n)

    return capped


def _expectation(
    series: LockedSeries, images: Sequence[LockedImage], size: SeriesSize | None
) -> SeriesExpectation:
    pinned = {i.sop_uid: i.archive_md5 for i in images} if series.images_pinned else None
    return SeriesExpectation(
        series_uid=series.series_uid,
        series_hash=series.series_hash,
        image_count=series.image_count,
        archive_objects=size.objects if size is not None else None,
        pinned=pinned,
        max_bytes=max(2 * series.bytes, series.bytes + _ZIP_SLACK),
    )


def _place(
    run: SeriesRun, series: LockedSeries, images: tuple[ExtractedImage, ...]
) -> SeriesOutcome | _Failure:
    paths = image_paths(run.layout, series, {i.sop_uid: i.temp_path for i in images})
    collisions = run.claims.claim(paths)
    if collisions:
        hint = "choose a --layout that tells these images apart (e.g. with {sop_uid})"
        return _Failure((*collisions, hint), final=True)
    crashpoint("fetch:claimed")
    filled = not series.images_pinned and _fill_lock(run, series, images)
    crashpoint("fetch:lock-filled")
    keys = run.workspace.place([(i.temp_path, paths[i.sop_uid]) for i in images])
    crashpoint("fetch:placed")
    stamp = run.now().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    run.state.upsert(
        _record(image, str(paths[image.sop_uid]), key, series.series_uid, stamp, run.lock_root)
        for image, key in zip(images, keys, strict=True)
    )
    crashpoint("fetch:recorded")
    return SeriesOutcome(
        series.series_uid,
        series.collection,
        series.patient_id,
        FetchStatus.FETCHED,
        images=len(images),
        bytes=sum(i.size for i in images),
        filled=filled,
    )


def _record(
    image: ExtractedImage, path: str, key: StatKey, series_uid: str, stamp: str, root: str
) -> FileRecord:
    return FileRecord(
        path=path,
        sop_uid=image.sop_uid,
        series_uid=series_uid,
        fs_id=key.fs,
        inode=key.inode,
        size=key.size,
        mtime_ns=key.mtime_ns,
        ctime_ns=key.ctime_ns,
        md5=image.md5,
        xxh3_128=image.xxh3_128,
        verified_at=stamp,
        checked_at=stamp,
        lock_root=root,
    )


def _fill_lock(run: SeriesRun, series: LockedSeries, images: tuple[ExtractedImage, ...]) -> bool:
    """Pin a series-only series' images: they just matched its pinned series hash.

    Returns False when another fetch of the same lock pinned the same images first.
    """
    pinned = [
        LockedImage(i.sop_uid, series.series_uid, i.archive_md5, i.size)
        for i in sorted(images, key=lambda i: i.sop_uid)
    ]
    with run.fill_lock, LockDatabase(database_path(run.lock_path)) as db:
        return db.fill_images(series.series_uid, pinned)

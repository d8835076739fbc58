"""The ``drift`` verb: what changed upstream since a lock, with as few requests as NBIA allows.

One run, in order (docs/drift.md):

1. re-resolve the lock's own spec (drift_select): series added, and which locked series the
   spec no longer reaches, with every selected series' current metadata;
2. ask the change feed (``getUpdatedSeries`` since the lock) as a hint;
3. descend the hash tree (drift_tree): one live hash per covered patient, or in fast mode one
   cached hash per whole collection (unless the change feed failed: then live, as normal
   mode), and deeper only where a hash differs;
4. classify series that left the resolution (served, hidden or removed) and list the images
   of changed series (drift_observe);
5. turn the lock and what the archive now serves into findings (drift_diff.diff, pure).

A check that could not be completed is never reported clean: a series that could not be
checked is ``not-checked`` and makes the report incomplete.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nbia_audit.archive.calls import CallRunner
from nbia_audit.archive.counting import CountingArchive
from nbia_audit.archive.protocol import Archive
from nbia_audit.drift.diff import (
    SeriesMeta,
    SeriesView,
    Upstream,
    deselection_explained,
    diff,
    swap_blind,
    views_of,
)
from nbia_audit.drift.observe import Absent, Images, ImageTarget, observe_absent, observe_images
from nbia_audit.drift.outcome import Evidence, Feed, build_report
from nbia_audit.drift.pinned import PinnedImages
from nbia_audit.drift.select import CurrentSelection, reach_of, resolve
from nbia_audit.drift.tree import Descent, build_probes, descend
from nbia_audit.errors import ApiError, StoreError
from nbia_audit.findings import AuditReport
from nbia_audit.lock.changes import field_changes
from nbia_audit.models import HashNode, LockedSeries, LockHeader
from nbia_audit.progress import ProgressCallback
from nbia_audit.spec.load import DatasetSpec, spec_from_normalised
from nbia_audit.store.reader import read_lock as read_proven_lock

__all__ = ["LockContents", "check_drift", "read_lock"]

# An archive, or a factory that opens one for the lock's server (closed after the run).
ArchiveSource = Archive | Callable[[LockHeader], Archive]


@dataclass(frozen=True, slots=True)
class LockContents:
    """Everything drift needs from a lock pair."""

    header: LockHeader
    spec: DatasetSpec
    series: tuple[LockedSeries, ...]
    images: Mapping[str, Mapping[str, str | None]]  # series UID -> SOP UID -> archive MD5
    nodes: tuple[HashNode, ...]


def read_lock(lock_path: Path) -> LockContents:
    """Read a lock pair, proven by :func:`lockproof.read_lock`, in the shape drift needs.

    Raises:
        LockNotFound: either file is missing.
        StoreError: the files cannot be read, or the pair does not prove itself.
        SpecError: the embedded spec is not one this version reads.
    """
    lock = read_proven_lock(lock_path)
    header, series, nodes = lock.header, lock.series, lock.nodes
    images = PinnedImages(lock.images)  # read one series at a time, where drift looks
    try:
        spec_data = json.loads(lock.spec_json)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{lock_path}: the embedded spec is not JSON ({exc})") from None
    spec = spec_from_normalised(spec_data, path=str(lock_path))
    return LockContents(header, spec, series, images, nodes)


def check_drift(
    lock_path: Path,
    archive: ArchiveSource,
    *,
    fast: bool = False,
    workers: int = 8,
    on_progress: ProgressCallback | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> AuditReport:
    """Compare the lock at ``lock_path`` with what the archive serves now.

    ``archive`` is an :class:`~nbia_audit.archive.protocol.Archive` (see
    :func:`~nbia_audit.archive.resolve.open_archive`), or a factory called with the lock's
    header (the command line opens the lock's server that way; an archive made by the
    factory is closed afterwards). ``fast`` trusts the archive's nightly collection hashes
    where they match (the report states the staleness window), unless the change feed cannot
    be asked: then every covered patient is asked live, as without ``fast``.

    Raises:
        LockNotFound, StoreError: the lock cannot be read.
        SpecError: the lock's embedded spec is unusable.
        ApiError: the archive could not answer the spec's resolution, so nothing could be
            concluded. Failures after that make the report incomplete instead.
    """
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    started = clock()
    lock = read_lock(lock_path)
    owned = callable(archive)
    source = archive(lock.header) if callable(archive) else archive
    try:
        evidence = _gather(lock, CountingArchive(source), fast, workers, on_progress, clock)
    finally:
        if owned:
            source.close()
    return build_report(str(lock_path), lock.header, evidence, started=started, now=clock)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gather(
    lock: LockContents,
    archive: CountingArchive,
    fast: bool,
    workers: int,
    on_progress: ProgressCallback | None,
    clock: Callable[[], dt.datetime],
) -> Evidence:
    locked = {v.series_uid: v for v in views_of(lock.series, lock.images)}
    selection = resolve(lock.spec, archive, workers=workers)
    listed_at = _iso(clock())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        runner = CallRunner(pool, on_progress)
        feed = _read_feed(archive, runner, lock.header)
        # --fast lets the feed (with the listings) choose which patients below a matching
        # cached collection hash are re-checked live; without its answer that choice is
        # blind, so every covered patient is asked live instead, as in normal mode.
        cached = fast and not feed.error
        suspects = _suspects(lock.series, selection, feed) if cached else frozenset()
        roots = build_probes(lock.series, lock.nodes, fast=cached)
        descent = descend(roots, archive, runner, now=lambda: _iso(clock()), suspects=suspects)
        absent = observe_absent(
            [u for u in locked if u not in selection.series],
            archive,
            runner,
            series_answers=descent.series_answers,
            proofs=descent.unchanged,
        )
        images = observe_images(_image_targets(locked, selection, descent), archive, runner)
    upstream, unknown = _upstream(locked, selection, descent, absent, images, lock.spec)
    return Evidence(
        fast=fast,
        locked=locked,
        upstream=upstream,
        findings=diff(locked, upstream),
        unknown=unknown,
        descent=descent,
        images=images,
        selection=selection,
        listed_at=listed_at,
        feed=feed,
        requests=archive.count,
    )


def _image_targets(
    locked: Mapping[str, SeriesView], selection: CurrentSelection, descent: Descent
) -> dict[str, ImageTarget]:
    """Series still in the dataset whose images the lock pins and must be listed: those
    whose hash changed, and those whose hash cannot see an image swapped for another with the
    same stored MD5 string (see :func:`swap_blind`)."""
    changed = descent.changed()
    out: dict[str, ImageTarget] = {}
    for uid, view in locked.items():
        if uid not in selection.series or view.images is None:
            continue
        if uid in changed:
            out[uid] = ImageTarget(view.images, changed[uid])
        elif uid in descent.unchanged and swap_blind(view.images):
            out[uid] = ImageTarget(view.images, view.series_hash or "")
    return out


def _read_feed(archive: Archive, runner: CallRunner, header: LockHeader) -> Feed:
    # v4 lists releases strictly after a *date*; start the day before the lock so that a
    # release later on the lock's own day is not missed (protocol §5).
    try:
        since = dt.datetime.strptime(header.resolved_at, "%Y-%m-%dT%H:%M:%SZ").date()
    except ValueError:
        return Feed("?", frozenset(), f"the lock's resolved-at {header.resolved_at!r} is no date")
    since -= dt.timedelta(days=1)
    (answer,) = runner.run_keeping_errors("change feed", [lambda: archive.updated_series(since)])
    if isinstance(answer, ApiError):
        return Feed(since.isoformat(), frozenset(), str(answer))
    return Feed(since.isoformat(), frozenset(info.series_uid for info in answer), "")


def _suspects(
    series: tuple[LockedSeries, ...], selection: CurrentSelection, feed: Feed
) -> frozenset[str]:
    """Locked series with live evidence that their content may have changed (fast mode):
    named by the change feed, submitted again, or listed with other content-hinting fields
    (image count, size, release date) by the comparison ``lock --check`` makes."""
    out = set(feed.series) & {s.series_uid for s in series}
    for s in series:
        info = selection.series.get(s.series_uid)
        if info is None:
            continue
        submitted = info.max_submission.isoformat() if info.max_submission else ""
        moved = field_changes(
            SeriesMeta.from_locked(s), SeriesMeta.from_info(info), content_changed=False
        )
        if submitted != s.max_submission or any(c.field.hints_content for c in moved):
            out.add(s.series_uid)
    return frozenset(out)


def _upstream(
    locked: Mapping[str, SeriesView],
    selection: CurrentSelection,
    descent: Descent,
    absent: Absent,
    images: Images,
    spec: DatasetSpec,
) -> tuple[Upstream, dict[str, str]]:
    """What the archive serves now, and the locked series that could not be determined."""
    unknown: dict[str, str] = dict(absent.failed)
    changed = descent.changed()
    selected: dict[str, SeriesView] = {}
    for uid, info in selection.series.items():
        meta = SeriesMeta.from_info(info)
        old = locked.get(uid)
        if old is None:
            selected[uid] = SeriesView(uid, meta, None)
        elif uid in descent.unchanged:
            if uid in images.failed:
                unknown[uid] = images.failed[uid]
            current = images.current.get(uid, old.images)
            selected[uid] = SeriesView(uid, meta, old.series_hash, current)
        elif uid in changed:
            if old.images is not None and uid in images.failed:
                unknown[uid] = images.failed[uid]
            selected[uid] = SeriesView(uid, meta, changed[uid], images.current.get(uid))
        else:
            unknown[uid] = descent.failed.get(uid, "its hash was not reached")
            selected[uid] = SeriesView(uid, meta, None)
    deselected = _deselected(locked, spec, absent, unknown)
    upstream = Upstream(
        selected=selected,
        deselected=deselected,
        hidden=dict(absent.hidden),
        removed=frozenset(absent.removed),
    )
    return upstream, unknown


def _deselected(
    locked: Mapping[str, SeriesView],
    spec: DatasetSpec,
    absent: Absent,
    unknown: dict[str, str],
) -> dict[str, SeriesView]:
    """Locked series still served that the spec no longer reaches, if that is believable:
    decided per series, from the selectors that could have selected it (protocol §4.3)."""
    out: dict[str, SeriesView] = {}
    for uid, info in absent.served.items():
        meta, old = SeriesMeta.from_info(info), locked[uid].meta
        if deselection_explained(old, meta, reach_of(spec, uid, old)):
            out[uid] = SeriesView(uid, meta, None)
        else:
            unknown[uid] = (
                "still served with the same metadata, yet missing from the spec's resolution; "
                "the listing may have been incomplete (protocol §4.3); run again"
            )
    return out

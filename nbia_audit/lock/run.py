"""The ``lock`` verb: resolve a spec into a lock, keep existing pins, and check staleness.

Like a package manager's lockfile: re-locking keeps every series already pinned (its hash,
images and metadata as they were) unless ``upgrade`` is asked for, and reports what an
upgrade would change. Re-locking an unchanged upstream rewrites nothing, so the text lock
stays byte-identical.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nbia_audit.archive.counting import CountingArchive
from nbia_audit.archive.protocol import Archive
from nbia_audit.errors import LockNotFound
from nbia_audit.findings import ProblemKind
from nbia_audit.lock.changes import LockChanges, changes_upstream, compare, states_of
from nbia_audit.lock.pin import hash_nodes, image_problems, locked_series, pin_series
from nbia_audit.lock.select import Selection, select_series
from nbia_audit.models import (
    LOCK_FORMAT,
    LockedImage,
    LockedLicense,
    LockedSeries,
    LockHeader,
    Problem,
)
from nbia_audit.progress import ProgressCallback
from nbia_audit.spec.load import DatasetSpec, load_spec
from nbia_audit.store.database import metadata_digest, write_lock_database
from nbia_audit.store.reader import SOURCE_DATABASE, LockProofError, read_lock
from nbia_audit.store.textlock import commit_lock, database_path, render_text_lock, root_digest
from nbia_audit.version import __version__

__all__ = [
    "CheckResult",
    "LockChanges",
    "LockResult",
    "check_lock",
    "default_lock_path",
    "lock_dataset",
    "stale_reasons",
]


@dataclass(frozen=True, slots=True)
class LockResult:
    """What ``lock`` did."""

    lock_path: Path
    header: LockHeader
    written: bool  # False when the lock on disk already said exactly this
    changes: LockChanges  # what this run changed relative to the previous lock
    pending: LockChanges  # upstream changes kept back because upgrade was not asked for
    problems: tuple[Problem, ...]
    requests: int  # archive calls made (archive.counting)
    # Series whose hash and image MD5s never agreed while asked: nothing was written.
    unsettled: tuple[str, ...] = ()
    # Series whose listed images have no MD5 for this account (hidden or not accessible):
    # nothing was written; ``problems`` says why for each.
    not_visible: tuple[str, ...] = ()

    @property
    def has_serious_problems(self) -> bool:
        """Whether the archive contradicted itself about a series it pinned (a finding:
        ``ProblemKind.serious``); short or missing archive MD5s alone are not."""
        return any(ProblemKind(p.kind).serious for p in self.problems)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``lock --check`` found."""

    stale: bool
    reasons: tuple[str, ...]
    changes: LockChanges
    requests: int


def default_lock_path(spec_path: Path) -> Path:
    """``dataset.yaml`` -> ``dataset.lock``, beside the spec."""
    return spec_path.with_suffix(".lock")


@dataclass(frozen=True, slots=True)
class _Existing:
    header: LockHeader
    spec_json: str
    series: dict[str, LockedSeries]
    images: Mapping[str, tuple[LockedImage, ...]]  # read one series per access (proven)
    problems: tuple[Problem, ...]
    text_sha256: str  # the text lock as read: a commit refuses to replace any other


def _read_existing(lock_path: Path) -> _Existing | None:
    """The lock pair already at ``lock_path``, proven (lockproof), or None.

    Raises:
        StoreError: a lock is there but does not prove itself: nothing of it is kept.
    """
    try:
        lock = read_lock(lock_path)
    except LockNotFound:
        if lock_path.exists() or lock_path.is_symlink():
            raise  # a text lock without its database: refuse rather than start afresh
        return None
    return _Existing(
        header=lock.header,
        spec_json=lock.spec_json,
        series=dict(lock.series_by_uid()),
        images=lock.images,
        problems=lock.problems,
        text_sha256=lock.text_sha256,
    )


def lock_dataset(
    spec_path: Path,
    archive: Archive,
    *,
    lock_path: Path | None = None,
    upgrade: bool = False,
    series_only: bool = False,
    workers: int = 8,
    now: Callable[[], dt.datetime] | None = None,
    on_progress: ProgressCallback | None = None,
) -> LockResult:
    """Resolve the spec at ``spec_path`` and write (or keep) its lock.

    Raises:
        SpecError: the spec is invalid, or names something the archive does not have.
        ApiError: the archive could not answer; nothing is written.
        StoreError: the existing lock cannot be read, or the new one cannot be written.
    """
    spec = load_spec(spec_path)
    lock_path = lock_path or default_lock_path(spec_path)
    existing = _read_existing(lock_path)
    archive = CountingArchive(archive)  # every call from here on is in LockResult.requests
    selection = select_series(spec, archive, workers=workers)
    if existing and existing.header.spec_digest == spec.digest() and not upgrade:
        return _keep_existing(lock_path, existing, selection, archive, workers)

    # Pins are kept only when they came from the same archive and API family: hashes seen
    # on another server say nothing about this one.
    same_source = existing is not None and (existing.header.base_url, existing.header.api) == (
        archive.base_url,
        spec.api,
    )
    keep = existing.series if existing and same_source and not upgrade else {}
    fresh = {u: i for u, i in selection.series.items() if u not in keep}
    pins = pin_series(
        fresh, archive, series_only=series_only, workers=workers, on_progress=on_progress
    )
    if pins.unsettled:
        # The archive kept changing these series while they were asked: no provable pins.
        # The pair on disk (if any) stays exactly as it was.
        return _unsettled(lock_path, existing, spec, archive, pins.unsettled)
    if pins.not_visible:
        # Images listed that the archive will not give MD5s for: they cannot be pinned, and
        # pinning the rest would be a lock of less than was asked. Nothing is written.
        refused = _unsettled(lock_path, existing, spec, archive, ())
        return dataclasses.replace(
            refused,
            problems=tuple(p for p in pins.problems if p.series_uid in pins.not_visible),
            not_visible=pins.not_visible,
        )
    series = {u: keep[u] for u in selection.series if u in keep}
    series.update(
        {u: locked_series(i, pins.series_hashes[u], not series_only) for u, i in fresh.items()}
    )
    # The kept series' images stay in the existing database until they are needed, one
    # series at a time: a re-lock never holds every pinned image.
    kept_images = existing.images if existing else {}

    def images_of(uid: str) -> tuple[LockedImage, ...]:
        if uid in pins.images:
            return pins.images[uid]
        return kept_images.get(uid, ()) if uid in keep else ()

    # Problems are computed afresh for every series, kept ones too: none outlives its cause.
    problems = (
        *pins.problems,
        *(
            p
            for u in sorted(set(series) - set(fresh))
            for p in image_problems(
                u,
                selection.series.get(u),
                series[u].series_hash,
                images_of(u) if series[u].images_pinned else None,
            )
        ),
    )

    pending = LockChanges()
    if existing and not upgrade:
        # Ask the archive for the kept series' current hashes only to report what an
        # upgrade would change; the pins themselves stay as they were.
        current = pin_series(
            {u: selection.series[u] for u in keep if u in selection.series},
            archive,
            series_only=True,
            workers=workers,
        )
        kept = (s for u, s in keep.items() if u in selection.series)
        pending = changes_upstream(kept, selection.series, current.series_hashes)

    ordered = sorted(series.values(), key=lambda s: (s.collection, s.patient_id, s.series_uid))
    nodes, node_problems = hash_nodes(
        ordered,
        archive,
        whole_collections=selection.whole_collections,
        whole_studies=selection.whole_studies,
        whole_patients=selection.whole_patients,
        fresh=fresh,
        workers=workers,
    )
    problems = tuple(sorted((*problems, *node_problems), key=lambda p: (p.series_uid, p.kind)))
    licenses = _licenses(archive, ordered)
    header = _header(spec, archive.base_url, ordered, series_only, now)
    header = dataclasses.replace(
        header, metadata_digest=metadata_digest(ordered, nodes, problems, licenses)
    )
    changes = compare(states_of(existing.series.values()) if existing else {}, states_of(ordered))
    spec_json = json.dumps(spec.normalised(), sort_keys=True, separators=(",", ":"))
    if existing and _same_content(existing, header, spec_json):
        header = dataclasses.replace(header, resolved_at=existing.header.resolved_at)
    text = render_text_lock(header, spec_json, ordered)
    written = False
    if not (lock_path.exists() and lock_path.read_text(encoding="utf-8") == text):
        all_images = (i for u in sorted(series) for i in images_of(u))

        def write_db(path: Path) -> None:
            write_lock_database(
                path, header, spec_json, ordered, all_images, nodes, problems, licenses
            )

        commit_lock(
            lock_path, text, write_db, previous=existing.text_sha256 if existing else None
        )
        written = True
    return LockResult(
        lock_path=lock_path,
        header=header,
        written=written,
        changes=changes,
        pending=pending,
        problems=problems,
        requests=archive.count,
    )


def _unsettled(
    lock_path: Path,
    existing: _Existing | None,
    spec: DatasetSpec,
    archive: CountingArchive,
    unsettled: tuple[str, ...],
) -> LockResult:
    header = existing.header if existing else _header(spec, archive.base_url, (), False, None)
    return LockResult(
        lock_path=lock_path,
        header=header,
        written=False,
        changes=LockChanges(),
        pending=LockChanges(),
        problems=(),
        requests=archive.count,
        unsettled=unsettled,
    )


def _keep_existing(
    lock_path: Path,
    existing: _Existing,
    selection: Selection,
    archive: CountingArchive,
    workers: int,
) -> LockResult:
    """The spec is unchanged and no upgrade was asked: keep every pin, report what differs."""
    current = pin_series(selection.series, archive, series_only=True, workers=workers)
    pending = changes_upstream(existing.series.values(), selection.series, current.series_hashes)
    return LockResult(
        lock_path=lock_path,
        header=existing.header,
        written=False,
        changes=LockChanges(),
        pending=pending,
        problems=existing.problems,
        requests=archive.count,
    )


def _licenses(archive: Archive, series: Sequence[LockedSeries]) -> list[LockedLicense]:
    """The archive's description of every license the locked series carry.

    Series name their license by long name and URL (getSeries); getLicenses adds the short
    name and the commercial-use flag a publication supplement must state.
    """
    wanted = {(s.license_name, s.license_url) for s in series if s.license_name}
    known = archive.licenses()
    out = {}
    for name, url in sorted(wanted):
        match = next((x for x in known if x.long_name == name), None) or next(
            (x for x in known if url and x.url == url), None
        )
        out[name] = LockedLicense(
            name=name,
            short_name=(match.short_name or "") if match else "",
            url=url or ((match.url or "") if match else ""),
            commercial_use=(match.commercial_use or "") if match else "",
        )
    return list(out.values())


def _same_content(existing: _Existing, header: LockHeader, spec_json: str) -> bool:
    comparable = dataclasses.replace(header, resolved_at=existing.header.resolved_at)
    return comparable == existing.header and spec_json == existing.spec_json


def _header(
    spec: DatasetSpec,
    base_url: str,
    series: Sequence[LockedSeries],
    series_only: bool,
    now: Callable[[], dt.datetime] | None,
) -> LockHeader:
    moment = (now or (lambda: dt.datetime.now(dt.UTC)))()
    return LockHeader(
        format=LOCK_FORMAT,
        name=spec.name,
        spec_digest=spec.digest(),
        server=spec.server,
        base_url=base_url,
        api=spec.api,
        tool_version=__version__,
        resolved_at=moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        root_digest=root_digest(series),
        series_count=len(series),
        image_count=sum(s.image_count for s in series),
        total_bytes=sum(s.bytes for s in series),
        series_only=series_only or not all(s.images_pinned for s in series),
    )


def check_lock(
    spec_path: Path,
    archive: Archive | None,
    *,
    lock_path: Path | None = None,
    workers: int = 8,
) -> CheckResult:
    """Is the lock stale? First offline (the spec changed), then against the archive.

    Writes nothing. With ``archive=None`` only the offline check runs.

    Raises:
        SpecError, ApiError, StoreError: as for :func:`lock_dataset`.
    """
    spec = load_spec(spec_path)
    lock_path = lock_path or default_lock_path(spec_path)
    try:
        # The database is not needed to tell staleness, but one that is there must prove
        # itself: a tampered pair is never reported up to date.
        text = read_lock(lock_path, load_images=False, text_only_fallback=True)
    except LockNotFound:
        return CheckResult(True, (f"{lock_path} does not exist",), LockChanges(), 0)
    if text.database_rejected:
        raise LockProofError(text.database_rejected)
    if text.source != SOURCE_DATABASE:
        # A pair without its database is not a lock any other verb would use.
        raise LockProofError(
            f"{database_path(lock_path)}: lock database not found; it is written beside"
            f" {lock_path.name} by `nbia-audit lock` (restore it, or re-run the lock)"
        )
    if text.header.spec_digest != spec.digest():
        reason = f"{spec_path} changed since it was locked (spec digest differs)"
        return CheckResult(True, (reason,), LockChanges(), 0)
    if archive is None:
        return CheckResult(False, (), LockChanges(), 0)
    archive = CountingArchive(archive)  # every call from here on is in CheckResult.requests
    # Not strict: a locked series the archive no longer serves makes the lock stale (exit 1),
    # it does not make the spec wrong (exit 2).
    selection: Selection = select_series(spec, archive, workers=workers, strict=False)
    current = pin_series(selection.series, archive, series_only=True, workers=workers)
    changes = changes_upstream(text.series, selection.series, current.series_hashes)
    return CheckResult(bool(changes), stale_reasons(changes), changes, archive.count)


def stale_reasons(changes: LockChanges) -> tuple[str, ...]:
    """One line per change, as ``lock --check`` reports them."""
    reasons = [f"series added upstream: {u}" for u in changes.added]
    reasons += [f"series no longer selected or served: {u}" for u in changes.removed]
    reasons += [f"series changed upstream (hash differs): {u}" for u in changes.changed]
    reasons += [
        f"series metadata changed upstream ({', '.join(f)}): {u}" for u, f in changes.metadata
    ]
    return tuple(reasons)

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
from typing import Protocol

from nbia_audit.client.records import License
from nbia_audit.errors import LockNotFound
from nbia_audit.lock.pin import HashArchive, hash_nodes, image_problems, locked_series, pin_series
from nbia_audit.lock.select import Archive, Selection, select_series
from nbia_audit.models import (
    LOCK_FORMAT,
    LockedImage,
    LockedLicense,
    LockedSeries,
    LockHeader,
    Problem,
)
from nbia_audit.spec.load import DatasetSpec, load_spec
from nbia_audit.store.database import metadata_digest, write_lock_database
from nbia_audit.store.reader import SOURCE_DATABASE, LockProofError, read_lock
from nbia_audit.store.textlock import commit_lock, database_path, render_text_lock, root_digest
from nbia_audit.version import __version__

__all__ = [
    "SERIOUS_PROBLEMS",
    "CheckResult",
    "LockChanges",
    "LockResult",
    "check_lock",
    "default_lock_path",
    "lock_dataset",
]

ProgressCallback = Callable[[str, int, int], None]

# Problems that mean the archive contradicts itself about what a series is: a lock that
# records one is a finding. Short or missing archive MD5s are facts of old data, not that.
SERIOUS_PROBLEMS = frozenset(
    {
        "series-hash-mismatch",  # only in locks written before pins had to settle
        "image-count-mismatch",
        "empty-series-hash",
        "study-hash-mismatch",
        "patient-hash-mismatch",
    }
)


class LockArchive(Archive, HashArchive, Protocol):
    """The archive as the lock verb uses it."""

    @property
    def base_url(self) -> str: ...

    def licenses(self) -> list[License]: ...


@dataclass(frozen=True, slots=True)
class LockChanges:
    """How a fresh resolution differs from a lock, by SeriesInstanceUID."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # same series, different series hash
    # Same series and hash, other metadata: (series UID, the fields that differ).
    metadata: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.metadata)


@dataclass(frozen=True, slots=True)
class LockResult:
    """What ``lock`` did."""

    lock_path: Path
    header: LockHeader
    written: bool  # False when the lock on disk already said exactly this
    changes: LockChanges  # what this run changed relative to the previous lock
    pending: LockChanges  # upstream changes kept back because upgrade was not asked for
    problems: tuple[Problem, ...]
    requests: int
    # Series whose hash and image MD5s never agreed while asked: nothing was written.
    unsettled: tuple[str, ...] = ()
    # Series whose listed images have no MD5 for this account (hidden or not accessible):
    # nothing was written; ``problems`` says why for each.
    not_visible: tuple[str, ...] = ()


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
    images: dict[str, tuple[LockedImage, ...]]
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
        images=dict(lock.images),
        problems=lock.problems,
        text_sha256=lock.text_sha256,
    )


def _diff(old: dict[str, str], new: dict[str, str]) -> LockChanges:
    return LockChanges(
        added=tuple(sorted(set(new) - set(old))),
        removed=tuple(sorted(set(old) - set(new))),
        changed=tuple(sorted(u for u in set(old) & set(new) if old[u] != new[u])),
    )


def lock_dataset(
    spec_path: Path,
    archive: LockArchive,
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
    selection = select_series(spec, archive, workers=workers)
    requests = selection.requests
    if existing and existing.header.spec_digest == spec.digest() and not upgrade:
        return _keep_existing(lock_path, existing, selection, archive, workers, requests)

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
    requests += pins.requests
    if pins.unsettled:
        # The archive kept changing these series while they were asked: no provable pins.
        # The pair on disk (if any) stays exactly as it was.
        return _unsettled(lock_path, existing, spec, archive, pins.unsettled, requests)
    if pins.not_visible:
        # Images listed that the archive will not give MD5s for: they cannot be pinned, and
        # pinning the rest would be a lock of less than was asked. Nothing is written.
        refused = _unsettled(lock_path, existing, spec, archive, (), requests)
        return dataclasses.replace(
            refused,
            problems=tuple(p for p in pins.problems if p.series_uid in pins.not_visible),
            not_visible=pins.not_visible,
        )
    series = {u: keep[u] for u in selection.series if u in keep}
    series.update(
        {u: locked_series(i, pins.series_hashes[u], not series_only) for u, i in fresh.items()}
    )
    images = {u: existing.images.get(u, ()) for u in series if existing and u in keep}
    images.update(pins.images)
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
                images.get(u) if series[u].images_pinned else None,
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
        requests += current.requests
        kept_rows = {u: _text_row(s) for u, s in keep.items() if u in selection.series}
        pending = _diff({u: str(r["hash"]) for u, r in kept_rows.items()}, current.series_hashes)
        pending = dataclasses.replace(
            pending, metadata=_metadata_changes(kept_rows, selection, current.series_hashes)
        )

    ordered = sorted(series.values(), key=lambda s: (s.collection, s.patient_id, s.series_uid))
    nodes, node_problems, node_requests = hash_nodes(
        ordered,
        archive,
        whole_collections=selection.whole_collections,
        whole_studies=selection.whole_studies,
        whole_patients=selection.whole_patients,
        fresh=fresh,
        workers=workers,
    )
    problems = tuple(sorted((*problems, *node_problems), key=lambda p: (p.series_uid, p.kind)))
    requests += node_requests
    licenses = _licenses(archive, ordered)
    requests += 1
    header = _header(spec, archive.base_url, ordered, series_only, now)
    header = dataclasses.replace(
        header, metadata_digest=metadata_digest(ordered, nodes, problems, licenses)
    )
    changes = _diff(
        {u: s.series_hash for u, s in existing.series.items()} if existing else {},
        {u: s.series_hash for u, s in series.items()},
    )
    spec_json = json.dumps(spec.normalised(), sort_keys=True, separators=(",", ":"))
    if existing and _same_content(existing, header, spec_json):
        header = dataclasses.replace(header, resolved_at=existing.header.resolved_at)
    text = render_text_lock(header, spec_json, ordered)
    written = False
    if not (lock_path.exists() and lock_path.read_text(encoding="utf-8") == text):
        all_images = [i for u in sorted(images) for i in images[u]]

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
        requests=requests,
    )


def _unsettled(
    lock_path: Path,
    existing: _Existing | None,
    spec: DatasetSpec,
    archive: LockArchive,
    unsettled: tuple[str, ...],
    requests: int,
) -> LockResult:
    header = existing.header if existing else _header(spec, archive.base_url, (), False, None)
    return LockResult(
        lock_path=lock_path,
        header=header,
        written=False,
        changes=LockChanges(),
        pending=LockChanges(),
        problems=(),
        requests=requests,
        unsettled=unsettled,
    )


def _keep_existing(
    lock_path: Path,
    existing: _Existing,
    selection: Selection,
    archive: LockArchive,
    workers: int,
    requests: int,
) -> LockResult:
    """The spec is unchanged and no upgrade was asked: keep every pin, report what differs."""
    current = pin_series(selection.series, archive, series_only=True, workers=workers)
    pending = _diff({u: s.series_hash for u, s in existing.series.items()}, current.series_hashes)
    pending = dataclasses.replace(
        pending,
        metadata=_metadata_changes(
            {u: _text_row(x) for u, x in existing.series.items()},
            selection,
            current.series_hashes,
        ),
    )
    return LockResult(
        lock_path=lock_path,
        header=existing.header,
        written=False,
        changes=LockChanges(),
        pending=pending,
        problems=existing.problems,
        requests=requests + current.requests,
    )


# What the text lock shows of a series besides its hash, by LockedSeries field.
_TEXT_FIELDS = {
    "image_count": "images",
    "bytes": "bytes",
    "collection": "collection",
    "patient_id": "patient",
    "study_uid": "study",
    "modality": "modality",
    "released": "released",
    "license_name": "license",
    "doi": "doi",
}


def _metadata_changes(
    locked: Mapping[str, Mapping[str, object]],
    selection: Selection,
    hashes: Mapping[str, str],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Series whose hash is unchanged but whose listed metadata differs from the lock's.

    ``locked`` maps series UIDs to rows as the text lock writes them (``hash``, ``images``,
    ``license`` ...; :func:`_text_row` makes one from a LockedSeries).
    """
    out = []
    for uid, old in sorted(locked.items()):
        info = selection.series.get(uid)
        if info is None or hashes.get(uid) != old["hash"]:
            continue  # added, removed or changed: reported as such
        new = _text_row(locked_series(info, "", True))
        fields = tuple(key for key in _TEXT_FIELDS.values() if str(old[key]) != str(new[key]))
        if fields:
            out.append((uid, fields))
    return tuple(out)


def _text_row(series: LockedSeries) -> dict[str, object]:
    row: dict[str, object] = {label: getattr(series, a) for a, label in _TEXT_FIELDS.items()}
    row["hash"] = series.series_hash
    return row


def _licenses(archive: LockArchive, series: Sequence[LockedSeries]) -> list[LockedLicense]:
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
    archive: LockArchive | None,
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
    # Not strict: a locked series the archive no longer serves makes the lock stale (exit 1),
    # it does not make the spec wrong (exit 2).
    selection: Selection = select_series(spec, archive, workers=workers, strict=False)
    current = pin_series(selection.series, archive, series_only=True, workers=workers)
    locked = {s.series_uid: s.series_hash for s in text.series}
    changes = _diff(locked, current.series_hashes)
    rows = {s.series_uid: _text_row(s) for s in text.series}
    changes = dataclasses.replace(
        changes, metadata=_metadata_changes(rows, selection, current.series_hashes)
    )
    reasons = [f"series added upstream: {u}" for u in changes.added]
    reasons += [f"series no longer selected or served: {u}" for u in changes.removed]
    reasons += [f"series changed upstream (hash differs): {u}" for u in changes.changed]
    reasons += [
        f"series metadata changed upstream ({', '.join(f)}): {u}" for u, f in changes.metadata
    ]
    return CheckResult(
        bool(changes), tuple(reasons), changes, selection.requests + current.requests
    )

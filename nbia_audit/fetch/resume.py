"""Resume: which series are already placed and verified, and which paths are taken.

A series is skipped only when every pinned image has a local-state record at exactly the
path the layout gives it, whose MD5 matches the lock, and whose file is still the one that
was proven: the same ``stat`` key, or, when the key changed (a copy, a touch, a restore),
the same MD5 once re-hashed. Anything less and the series is fetched again.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbia_audit.dicom.fields import HeaderValues, read_header_values
from nbia_audit.digests import digest_file
from nbia_audit.fetch.layouts import ImageFields, Layout, SeriesFields, series_fields
from nbia_audit.merkle import MATCHES, check_archive_md5
from nbia_audit.models import LockedImage, LockedSeries
from nbia_audit.store.localstate import FileRecord
from nbia_audit.store.statkey import stat_key

__all__ = ["PathClaims", "PlacedCheck", "check_placed", "records_by_sop"]


@dataclass(frozen=True, slots=True)
class PlacedCheck:
    """Whether a series is in place and verified; records whose stat key was refreshed."""

    done: bool
    refreshed: tuple[FileRecord, ...] = ()  # stat key changed, MD5 still right: re-dated
    bytes: int = 0  # size of the series' files in place


_NOT_DONE = PlacedCheck(False)


def records_by_sop(records: Iterable[FileRecord]) -> dict[str, list[FileRecord]]:
    """Group local-state records by SOPInstanceUID (one image may have several copies)."""
    grouped: dict[str, list[FileRecord]] = {}
    for record in records:
        grouped.setdefault(record.sop_uid, []).append(record)
    return grouped


def check_placed(
    dest: Path,
    series: LockedSeries,
    images: Sequence[LockedImage],
    layout: Layout,
    known: Mapping[str, list[FileRecord]],
    stamp: str,
) -> PlacedCheck:
    """Is every pinned image of ``series`` in place under ``layout`` and still verified?

    ``stamp`` (ISO 8601 UTC) dates the records of files that had to be hashed again.

    Raises:
        SpecError: the layout makes a path component longer than file systems allow.
    """
    if not series.images_pinned or len(images) != series.image_count:
        return _NOT_DONE
    header: HeaderValues | None = None
    if layout.needs_series_header and images:
        first = min(images, key=lambda i: i.sop_uid)
        proven = _first_proven(dest, first, known.get(first.sop_uid, []), stamp)
        if proven is None:
            return _NOT_DONE
        header = read_header_values(dest / proven.path)
    values = series_fields(series, header)
    refreshed: list[FileRecord] = []
    size = 0
    for image in images:
        found = _proven_at_layout_path(dest, image, layout, values, known, stamp)
        if found is None:
            return _NOT_DONE
        if found != _original(found, known):
            refreshed.append(found)
        size += found.size
    return PlacedCheck(True, tuple(refreshed), size)


def _proven_at_layout_path(
    dest: Path,
    image: LockedImage,
    layout: Layout,
    values: SeriesFields,
    known: Mapping[str, list[FileRecord]],
    stamp: str,
) -> FileRecord | None:
    for record in known.get(image.sop_uid, []):
        if record.series_uid != image.series_uid:
            continue
        instance = ""
        if layout.needs_image_header:
            instance = read_header_values(dest / record.path).instance_number
        wanted = layout.path(values, ImageFields(image.sop_uid, instance))
        if str(wanted) != record.path:
            continue
        proven = _prove(dest, record, image, stamp)
        if proven is not None:
            return proven
    return None


def _first_proven(
    dest: Path, image: LockedImage, candidates: list[FileRecord], stamp: str
) -> FileRecord | None:
    for record in candidates:
        if record.series_uid == image.series_uid:
            proven = _prove(dest, record, image, stamp)
            if proven is not None:
                return proven
    return None


def _prove(dest: Path, record: FileRecord, image: LockedImage, stamp: str) -> FileRecord | None:
    """The record if its file is still what was proven (re-dated if it had to be hashed)."""
    if check_archive_md5(image.archive_md5, record.md5) not in MATCHES:
        return None  # the lock now pins other bytes for this image
    path = dest / record.path
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        key = stat_key(path)
        if key == record.stat:
            return record
        digest = digest_file(path)
    except OSError:
        return None
    if digest.md5 != record.md5:
        return None
    return record.reproven(key, digest.xxh3_128, stamp)


def _original(record: FileRecord, known: Mapping[str, list[FileRecord]]) -> FileRecord | None:
    return next((r for r in known.get(record.sop_uid, []) if r.path == record.path), None)


class PathClaims:
    """Which image owns each path under the destination, compared case-insensitively.

    Seeded with what earlier runs placed; a series may be placed only when none of its
    paths collide with each other or with another image's (two images at one path would
    leave one of them missing, and ``Abc``/``abc`` are one file on macOS and Windows).
    """

    def __init__(self, dest: Path, records: Iterable[FileRecord] = ()) -> None:
        self.dest = dest
        self._owners = {r.path.casefold(): (r.sop_uid, r.path) for r in records}
        self._lock = threading.Lock()

    def claim(self, wanted: Mapping[str, PurePosixPath]) -> list[str]:
        """Claim a path for every image (SOPInstanceUID -> path), all or none.

        Returns the collisions; nothing is claimed when there are any.
        """
        problems = []
        mine: dict[str, tuple[str, str]] = {}
        for sop, path in sorted(wanted.items()):
            key = str(path).casefold()
            if key in mine:
                problems.append(f"images {mine[key][0]} and {sop} would both be written to {path}")
            mine[key] = (sop, str(path))
        with self._lock:
            for key, (sop, path_text) in mine.items():
                owner = self._owners.get(key)
                if owner and owner[0] != sop and os.path.lexists(self.dest / owner[1]):
                    problems.append(f"image {sop} would overwrite image {owner[0]} at {path_text}")
            if not problems:
                self._owners.update(mine)
        return problems

"""What a lock says a copy must hold, in the shape ``verify`` needs it.

Two sources (ARCHITECTURE.md, "The lock: a Merkle pin"):

* the lock database beside the text lock: every image with the archive's MD5 string, so a
  copy is checked image by image;
* the text lock alone (a reader who took the small file from a paper's supplement), or a
  ``--series-only`` lock whose images fetch has not filled in yet: only series hashes and
  image counts, so a copy is checked series by series by recomputing NBIA's series hash
  from its files (protocol §1.3).

A lock can mix both: fetch fills a series-only lock's images in series by series.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from nbia_audit.errors import StoreError
from nbia_audit.merkle import normalise_archive_md5
from nbia_audit.models import LockHeader
from nbia_audit.store.reader import SOURCE_TEXT, read_lock

__all__ = ["Expectation", "ExpectedImage", "ExpectedSeries", "load_expectation"]


@dataclass(frozen=True, slots=True)
class ExpectedSeries:
    """One locked series, with what verify compares against."""

    series_uid: str
    collection: str
    patient_id: str
    study_uid: str
    series_hash: str  # verbatim from the lock
    image_count: int
    images_pinned: bool  # False: only the series hash can be checked


class ExpectedImage(NamedTuple):
    """One locked image: its series and the archive's MD5 string verbatim (None: NULL)."""

    series_uid: str
    archive_md5: str | None
    size: int | None


class Expectation:
    """The locked series and images, plus lookups built on demand.

    Images are loaded on first use, once, even when worker threads ask together.
    """

    def __init__(
        self,
        header: LockHeader,
        source: str,
        series: Mapping[str, ExpectedSeries],
        images: Mapping[str, ExpectedImage] | Callable[[], Mapping[str, ExpectedImage]],
        db_path: Path | None = None,
        *,
        database_rejected: str = "",
    ) -> None:
        self.header = header
        self.source = source  # "database" | "text lock"
        # Why a database beside the text lock failed its proof and was not used ("": none).
        self.database_rejected = database_rejected
        self.series = series
        self.db_path = db_path  # the lock database, when there is one
        self.has_pinned_images = any(s.images_pinned and s.image_count for s in series.values())
        self._load = images if callable(images) else None
        self._images: Mapping[str, ExpectedImage] | None = None if callable(images) else images
        self._images_of: dict[str, list[str]] | None = None
        self._by_md5: dict[str, str] | None = None
        self._guard = threading.RLock()  # worker threads may ask first

    @property
    def images(self) -> Mapping[str, ExpectedImage]:
        """Every image of the lock's pinned series, by SOPInstanceUID.

        Raises:
            StoreError: the lock database cannot be read.
        """
        if self._images is None:
            with self._guard:
                if self._images is None:
                    assert self._load is not None
                    self._images = self._load()
        return self._images

    @property
    def images_of(self) -> Mapping[str, list[str]]:
        """The SOPInstanceUIDs of each pinned series."""
        if self._images_of is None:
            grouped: dict[str, list[str]] = {uid: [] for uid in self.series}
            for sop, image in self.images.items():
                grouped.setdefault(image.series_uid, []).append(sop)
            self._images_of = grouped
        return self._images_of

    def image_with_md5(self, md5: str) -> str | None:
        """The locked image whose archive MD5 (normalised) is ``md5``, if any.

        A file's content proves which image it is: a full pass identifies files this way
        first, and files whose header cannot be read only this way. Built on first use.
        """
        if self._by_md5 is None:
            with self._guard:
                if self._by_md5 is None:
                    by_md5: dict[str, str] = {}
                    for sop, image in self.images.items():
                        normal = normalise_archive_md5(image.archive_md5)
                        if normal is not None:
                            by_md5.setdefault(normal, sop)
                    self._by_md5 = by_md5
        return self._by_md5.get(md5)


def load_expectation(lock_path: Path) -> Expectation:
    """Read the lock at ``lock_path``, proven by :func:`lockproof.read_lock`.

    A database that fails its proof is not used: the expectation falls back to the text
    lock's series hashes and says why (``database_rejected``), which verify reports as a
    finding. Images are read on first use, by proving the pair again and checking it is
    the same text lock: a database changed since the first proof is never trusted.

    Raises:
        LockNotFound: no lock at ``lock_path``.
        StoreError: the text lock cannot be read or does not prove itself.
    """
    lock = read_lock(lock_path, load_images=False, text_only_fallback=True)
    series = {
        s.series_uid: ExpectedSeries(
            s.series_uid,
            s.collection,
            s.patient_id,
            s.study_uid,
            s.series_hash,
            s.image_count,
            s.images_pinned,
        )
        for s in lock.series
    }
    if lock.source == SOURCE_TEXT:
        return Expectation(
            lock.header, lock.source, series, {}, database_rejected=lock.database_rejected
        )
    load = functools.partial(_load_images, lock_path, lock.header)
    return Expectation(lock.header, lock.source, series, load, lock.database_path)


def _load_images(lock_path: Path, header: LockHeader) -> dict[str, ExpectedImage]:
    """Raises: StoreError: the pair no longer proves itself, or was replaced meanwhile."""
    lock = read_lock(lock_path, load_images=True)
    if lock.header != header:
        raise StoreError(f"{lock_path}: the lock changed while verifying; run again")
    return {
        image.sop_uid: ExpectedImage(image.series_uid, image.archive_md5, image.size)
        for pinned in lock.images.values()
        for image in pinned
    }

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
import sqlite3
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .errors import StoreError
from .hashing import normalise_archive_md5
from .lockfile import database_path, read_text_lock, recover_interrupted
from .models import LOCK_FORMAT, LockHeader
from .store import LockDatabase

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
    ) -> None:
        self.header = header
        self.source = source  # "database" | "text lock"
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


# Straight SQL rather than LockDatabase's row objects: a lock holds tens of thousands of
# images, and a stat pass over an unchanged copy should cost little more than its walk.
_SERIES_SQL = (
    "SELECT series_uid, collection, patient_id, study_uid, series_hash, image_count,"
    " images_pinned FROM series ORDER BY collection, patient_id, study_uid, series_uid"
)
_IMAGES_SQL = (
    "SELECT i.sop_uid, i.series_uid, i.archive_md5, i.size FROM images i"
    " JOIN series s ON s.series_uid = i.series_uid WHERE s.images_pinned"
)


def load_expectation(lock_path: Path) -> Expectation:
    """Read the lock at ``lock_path`` (and its database, when present).

    Raises:
        LockNotFound: no lock at ``lock_path``.
        StoreError: the lock or its database cannot be read, or they do not match.
    """
    try:
        recover_interrupted(lock_path)
    except OSError as exc:
        raise StoreError(f"{lock_path}: cannot tidy an interrupted lock commit: {exc}") from exc
    db_path = database_path(lock_path)
    if not db_path.is_file():
        text = read_text_lock(lock_path)
        return Expectation(text.header, "text lock", _series_from_text(lock_path, text.series), {})
    text_identity = _text_identity(lock_path)
    try:
        with LockDatabase(db_path) as db:
            header = db.header()
            if (header.root_digest, header.resolved_at) != text_identity:
                raise StoreError(
                    f"{db_path}: this database belongs to another version of {lock_path.name}; "
                    f"re-run `nbia-audit lock`, or remove {db_path.name} to verify by series "
                    "hashes alone"
                )
            series = {
                r[0]: ExpectedSeries(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]))
                for r in db.db.execute(_SERIES_SQL)
            }
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise StoreError(f"{db_path}: cannot read the lock database ({exc})") from exc
    load = functools.partial(_load_images, db_path, header.root_digest)
    return Expectation(header, "database", series, load, db_path)


def _load_images(db_path: Path, root_digest: str) -> dict[str, ExpectedImage]:
    """Raises: StoreError: the lock database cannot be read, or was replaced meanwhile."""
    make = ExpectedImage._make
    try:
        conn = sqlite3.connect(str(db_path))
        try:
            # A lock is replaced by renaming (lockfile.commit_lock), so this connection
            # reads one version throughout; it must be the version the header came from.
            row = conn.execute("SELECT value FROM meta WHERE key = 'root_digest'").fetchone()
            if not row or row[0] != root_digest:
                raise StoreError(f"{db_path}: the lock changed while verifying; run again")
            return {r[0]: make(r[1:]) for r in conn.execute(_IMAGES_SQL)}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: cannot read the lock database ({exc})") from exc


def _text_identity(lock_path: Path) -> tuple[str, str]:
    """(root digest, resolved-at) of the text lock.

    With the database present only the ``[lock]`` table is needed, and parsing a
    thousand series lines just to compare two values costs a tenth of a stat pass over
    20,000 images (docs/benchmarks.md). The writer puts ``[lock]`` first
    (lockfile.render_text_lock); anything unexpected falls back to the full parse, which
    also raises the proper errors.

    Raises:
        LockNotFound: no lock at ``lock_path``.
        StoreError: the lock is not readable.
    """
    try:
        head, found, _ = lock_path.read_text(encoding="utf-8").partition("\n[dataset]")
        table = tomllib.loads(head)["lock"] if found else {}
        if table and int(table["format"]) <= LOCK_FORMAT:
            return str(table["root-digest"]), str(table["resolved-at"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        pass
    header = read_text_lock(lock_path).header
    return header.root_digest, header.resolved_at


def _series_from_text(
    lock_path: Path, rows: tuple[dict[str, object], ...]
) -> dict[str, ExpectedSeries]:
    series: dict[str, ExpectedSeries] = {}
    for row in rows:
        try:
            uid = str(row["uid"])
            series[uid] = ExpectedSeries(
                series_uid=uid,
                collection=str(row.get("collection", "")),
                patient_id=str(row.get("patient", "")),
                study_uid=str(row.get("study", "")),
                series_hash=str(row["hash"]),
                image_count=int(str(row["images"])),
                images_pinned=False,
            )
        except (KeyError, ValueError) as exc:
            raise StoreError(f"{lock_path}: a series entry lacks a valid {exc}") from None
    return series

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from nbia_audit.errors import StoreError
from nbia_audit.merkle import normalise_archive_md5
from nbia_audit.models import LockHeader
from nbia_audit.store.reader import SOURCE_TEXT, read_lock
from nbia_audit.verify.workdb import WorkDB

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
    """The locked series, and the locked images behind SQL point queries.

    Images are streamed, series by series, into a per-run work database
    (:class:`~nbia_audit.verify.workdb.WorkDB`) on first use, once, even when worker
    threads ask together; no Python object per image outlives its series. Close the
    expectation (or use it as a context manager) to remove the work database.
    """

    def __init__(
        self,
        header: LockHeader,
        source: str,
        series: Mapping[str, ExpectedSeries],
        images: ImageSource | None = None,
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
        self._source = images
        self._work: WorkDB | None = None
        self._loaded = False
        self._guard = threading.RLock()  # worker threads may ask first

    # -- the work database ----------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection to the loaded work database.

        Raises:
            StoreError: the lock database cannot be read, or no longer proves itself.
        """
        if not self._loaded:
            with self._guard:
                if not self._loaded:
                    self._load()
        assert self._work is not None
        return self._work.connection()

    def _load(self) -> None:
        work = WorkDB("expected.db")
        try:
            db = work.connection()
            db.execute(_SCHEMA)
            if self._source is not None:
                for uid, images in self._source():
                    db.executemany(
                        "INSERT INTO images VALUES (?, ?, ?, ?, ?)",
                        [_row(uid, sop, md5, size) for sop, md5, size in images],
                    )
            db.executescript(_INDEXES)
            db.commit()
            work.freeze()
        except BaseException:
            work.close()
            raise
        self._work, self._loaded = work, True

    def close(self) -> None:
        """Remove the work database (the expectation cannot look images up afterwards)."""
        with self._guard:
            if self._work is not None:
                self._work.close()

    def __enter__(self) -> Expectation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups (any thread) -------------------------------------------------------------

    @property
    def images(self) -> ImageLookup:
        """Point lookups by SOPInstanceUID (``get``, ``[]``, ``in``, ``len``); never a dict."""
        return ImageLookup(self)

    def image(self, sop: str) -> ExpectedImage | None:
        """The locked image ``sop`` of a pinned series, if the lock pins it."""
        if not sop:
            return None
        row = (
            self._db()
            .execute("SELECT series, md5, verbatim, size FROM images WHERE sop = ?", (sop,))
            .fetchone()
        )
        return None if row is None else _image(*row)

    def has_image(self, sop: str) -> bool:
        """Whether the lock pins an image ``sop`` (in a series pinned image by image)."""
        return self.image(sop) is not None

    def images_of(self, series_uid: str) -> list[tuple[str, ExpectedImage]]:
        """The locked images (SOPInstanceUID, image) of one series, by SOPInstanceUID."""
        rows = self._db().execute(
            "SELECT sop, series, md5, verbatim, size FROM images WHERE series = ? ORDER BY sop",
            (series_uid,),
        )
        return [(sop, _image(*rest)) for sop, *rest in rows]

    def pinned_image_count(self) -> int:
        """How many images the lock pins one by one."""
        row = self._db().execute("SELECT count(*) FROM images").fetchone()
        return int(row[0])

    def image_with_md5(self, md5: str) -> str | None:
        """The locked image whose archive MD5 (normalised) is ``md5``, if any.

        A file's content proves which image it is: a full pass identifies files this way
        first, and files whose header cannot be read only this way. Two images with the same
        MD5: the first in lock order (series by series, each by SOPInstanceUID).
        """
        found = self.identify_by_md5(md5)
        return None if found is None else found[0]

    def identify_by_md5(self, md5: str) -> tuple[str, str] | None:
        """(SOPInstanceUID, series UID) of :meth:`image_with_md5`, in one query."""
        try:
            key = bytes.fromhex(md5)
        except ValueError:
            return None
        row = (
            self._db()
            .execute("SELECT sop, series FROM images WHERE md5 = ? ORDER BY rowid LIMIT 1", (key,))
            .fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]))


class ImageLookup:
    """The locked images by SOPInstanceUID, one query per lookup (no iteration: that would
    hold them all)."""

    __slots__ = ("_exp",)

    def __init__(self, exp: Expectation) -> None:
        self._exp = exp

    def get(self, sop: str, default: ExpectedImage | None = None) -> ExpectedImage | None:
        image = self._exp.image(sop)
        return default if image is None else image

    def __getitem__(self, sop: str) -> ExpectedImage:
        image = self._exp.image(sop)
        if image is None:
            raise KeyError(sop)
        return image

    def __contains__(self, sop: object) -> bool:
        return isinstance(sop, str) and self._exp.has_image(sop)

    def __len__(self) -> int:
        return self._exp.pinned_image_count()


# Archive MD5s are held as 16 bytes (normalised) plus the verbatim string only where it is
# not simply those bytes in lowercase hex: a third of the space of text, same information.
_SCHEMA = """
CREATE TABLE images (
    sop TEXT NOT NULL, series TEXT NOT NULL, md5 BLOB, verbatim TEXT, size INTEGER
)"""
_INDEXES = """
CREATE UNIQUE INDEX images_sop ON images(sop);
CREATE INDEX images_series ON images(series, sop);
CREATE INDEX images_md5 ON images(md5) WHERE md5 IS NOT NULL;
"""


def _row(
    series: str, sop: str, archive_md5: str | None, size: int | None
) -> tuple[str, str, bytes | None, str | None, int | None]:
    if archive_md5 is not None and len(archive_md5) == 32:  # the rule: 32 hex digits
        try:
            md5: bytes | None = bytes.fromhex(archive_md5)
        except ValueError:
            md5 = None
        if md5 is not None and len(md5) == 16:
            return sop, series, md5, None if md5.hex() == archive_md5 else archive_md5, size
    normal = normalise_archive_md5(archive_md5)
    md5 = bytes.fromhex(normal) if normal is not None else None
    verbatim = None if archive_md5 is None or archive_md5 == normal else archive_md5
    return sop, series, md5, verbatim, size


def _image(series: str, md5: bytes | None, verbatim: str | None, size: int | None) -> ExpectedImage:
    if verbatim is not None:
        return ExpectedImage(series, verbatim, size)
    return ExpectedImage(series, md5.hex() if md5 is not None else None, size)


# Series by series: (series UID, its images as (SOP, archive MD5 verbatim, size)).
ImageSource = Callable[[], Iterable[tuple[str, Iterable[tuple[str, str | None, int | None]]]]]


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
            lock.header, lock.source, series, None, database_rejected=lock.database_rejected
        )
    load = functools.partial(_stream_images, lock_path, lock.header)
    return Expectation(lock.header, lock.source, series, load, lock.database_path)


def _stream_images(
    lock_path: Path, header: LockHeader
) -> Iterator[tuple[str, Iterator[tuple[str, str | None, int | None]]]]:
    """The lock's images series by series (the reader proves each series as it loads it).

    Raises: StoreError: the pair no longer proves itself, or was replaced meanwhile.
    """
    lock = read_lock(lock_path, load_images=True)
    if lock.header != header:
        raise StoreError(f"{lock_path}: the lock changed while verifying; run again")
    for uid, images in lock.images.items():
        yield uid, ((i.sop_uid, i.archive_md5, i.size) for i in images)

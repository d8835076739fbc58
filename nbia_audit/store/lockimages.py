"""The images of a proven lock pair, read one series at a time and proven again as they are read.

NLST pins 21 M images: as Python objects they would take gigabytes, so a proven lock does not
keep them. :class:`ProvenImages` is the ``images`` mapping of :class:`store.reader.LockContents`:
series UID -> that series' images sorted by SOP UID, where every access reads the series from
the database in its own read-only snapshot and proves it before handing it out:

* the database still carries the stamp of the text lock it was proven against, and its schema
  has not changed since (``PRAGMA schema_version``);
* the series' stored MD5s recompute, by NBIA's algorithm, to the series hash the text lock pins.

An edit of the database between the proof at read time and a later access therefore never
reaches a verb: the access raises :class:`LockProofError`. Iteration goes series by series in
lock order and holds one series at a time; nothing is cached.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from nbia_audit.errors import StoreError
from nbia_audit.merkle import series_hash
from nbia_audit.models import LockedImage
from nbia_audit.store.database import image_rows_query, md5_text
from nbia_audit.store.storable import from_storable, to_storable

__all__ = ["LockProofError", "ProvenImages", "refusal"]


class LockProofError(StoreError):
    """The lock database does not prove itself against its text lock (or the text lock
    against itself): it is not used."""


def refusal(db_path: Path, what: str) -> LockProofError:
    """The one wording of a database that is not used."""
    return LockProofError(
        f"{db_path}: {what}; the database is not used (restore the pair from version"
        f" control, or re-run `nbia-audit lock` to rebuild it)"
    )


class ProvenImages(Mapping[str, tuple[LockedImage, ...]]):
    """Series UID -> its pinned images by SOP UID, read and proven per access (see module)."""

    __slots__ = (
        "_db_path",
        "_hashes",
        "_layout",
        "_schema_version",
        "_stamp",
        "_text_name",
        "_uri",
    )

    def __init__(
        self,
        db_path: Path,
        *,
        text_name: str,
        stamp: str,
        schema_version: int,
        layout: int,
        hashes: dict[str, str],
    ) -> None:
        """``hashes``: the text lock's series hash of every series with image rows, in lock
        order (the mapping's keys and their order)."""
        self._db_path = db_path
        self._uri = db_path.resolve().as_uri() + "?mode=ro"  # read-only, as connect_read_only
        self._text_name = text_name
        self._stamp = stamp
        self._schema_version = schema_version
        self._layout = layout
        self._hashes = hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._hashes)

    def __contains__(self, key: object) -> bool:
        return key in self._hashes

    def __getitem__(self, series_uid: str) -> tuple[LockedImage, ...]:
        pinned = self._hashes[series_uid]  # KeyError: no images pinned for it
        try:
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail(f"it cannot be opened any more ({exc})") from None
        try:
            conn.execute("BEGIN")  # the stamp, schema and rows from one snapshot
            images = self._read(conn, series_uid)
            conn.execute("COMMIT")
        except (sqlite3.DatabaseError, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise self._fail(f"it cannot be read any more ({str(exc)[:200]!r})") from None
        finally:
            conn.close()
        recomputed = series_hash(i.archive_md5 for i in images)
        if not images or recomputed != pinned:
            raise self._fail(
                f"series {series_uid}: since it was proven, its {len(images)} image MD5s give"
                f" {_short(recomputed or '(empty)')}, {self._text_name} pins {_short(pinned)}"
            )
        return images

    def _read(self, conn: sqlite3.Connection, series_uid: str) -> tuple[LockedImage, ...]:
        stamp, version = conn.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'text_sha256'),"
            " (SELECT schema_version FROM pragma_schema_version)"
        ).fetchone()
        if version != self._schema_version:
            raise self._fail("its schema changed since it was proven")
        if stamp != self._stamp:
            raise self._fail(
                f"since it was proven, it was replaced or its stamp changed: it no longer names"
                f" {self._text_name}"
            )
        rows = conn.execute(image_rows_query(self._layout), (to_storable(series_uid),))
        images = []
        for sop, md5, size in rows.fetchall():
            # Inline: this runs once per image of every series a verb reads.
            if type(md5) is bytes:
                md5 = md5.hex()
            elif md5 is not None:
                md5 = md5_text(md5)
            images.append(LockedImage(_text(sop), series_uid, md5, size))
        return tuple(images)

    def _fail(self, what: str) -> LockProofError:
        return refusal(self._db_path, what)

    def __eq__(self, other: object) -> bool:
        # Mapping's own __eq__ would read every series of both: compare what was proven.
        if not isinstance(other, ProvenImages):
            return NotImplemented
        return (self._db_path, self._stamp, self._hashes) == (
            other._db_path,
            other._stamp,
            other._hashes,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ProvenImages({str(self._db_path)!r}, {len(self)} series)"


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a SOP UID stored as {type(value).__name__}")
    # An ASCII string holds no escape (store.storable.ESCAPE is not ASCII), and asking is O(1).
    return value if value.isascii() else from_storable(value)


def _short(value: str) -> str:
    return value[:8] + "…" if len(value) == 32 else value[:80]

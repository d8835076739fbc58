"""The one lock reader: the database is proven against the text lock before anything uses it.

The text lock is the root of trust (it is what a paper cites). Reading it proves it against
itself: every field typed, the counts and the root digest recomputed from its series lines
(:func:`store.textlock.read_text_lock`). The database beside it is only an index; before any verb
trusts it, this module proves, in one read-only snapshot of it:

1. its stamp names the text lock's exact bytes (sha256), and its header and embedded spec
   are the text's;
2. it holds exactly the text's series, each with the text's fields;
3. every series with pinned images recomputes, by NBIA's algorithm over the stored image
   MD5s, to the text's series hash, and no image belongs to a series without pins or
   outside the lock;
4. everything else it holds (descriptions, licenses, hash nodes, problems) digests to the
   text header's ``metadata-digest`` (format 2 locks).

A database that fails is never used: the reader raises :class:`LockProofError` naming the
file and the first disagreement, except where the caller accepts the text lock alone
(``verify``), which gets the text's series and the reason the database was refused.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import sqlite_utils

from nbia_audit.errors import LockFormatTooNew, LockNotFound, StoreError
from nbia_audit.merkle import series_hash
from nbia_audit.models import (
    HashNode,
    LockedImage,
    LockedLicense,
    LockedSeries,
    LockHeader,
    Problem,
)
from nbia_audit.store.database import (
    ARCHIVE_MD5_TEXT,
    KNOWN_MIGRATIONS,
    LAYOUT_MIGRATIONS,
    connect_read_only,
    header_from_meta,
    image_rows_query,
    layout_of,
    lock_migrations,
    md5_text,
    metadata_digest,
    node_from_row,
    series_from_row,
)
from nbia_audit.store.lockimages import LockProofError, ProvenImages, refusal
from nbia_audit.store.sqlshape import first_difference
from nbia_audit.store.storable import from_storable, to_storable
from nbia_audit.store.textlock import TextLock, database_path, read_text_lock, recover_interrupted

__all__ = ["LockContents", "LockProofError", "prove_database", "read_lock"]

# What an archive MD5 column looks like when every value is plain: no separator, no escape.

SOURCE_DATABASE = "database"
SOURCE_TEXT = "text lock"


@dataclass(frozen=True, slots=True)
class LockContents:
    """A lock pair after proof: everything in it is what the text lock pins.

    With ``source == "text lock"`` there is no usable database: ``series`` carries only the
    text's fields and no images; ``database_rejected`` says why a database that was there
    was not used ("" when there was none).
    """

    lock_path: Path
    header: LockHeader
    spec_json: str
    series: tuple[LockedSeries, ...]  # by collection, patient, study, series UID
    images: Mapping[str, tuple[LockedImage, ...]]  # series UID -> its images, by SOP UID
    nodes: tuple[HashNode, ...] = ()
    problems: tuple[Problem, ...] = ()
    licenses: tuple[LockedLicense, ...] = ()
    source: str = SOURCE_DATABASE
    database_rejected: str = ""
    image_count: int = 0  # images pinned in the database (also when not loaded)
    database_layout: int = 0  # of the database's tables (store/database.py); 0: no database
    text_sha256: str = ""  # of the text lock's bytes as read
    _by_uid: dict[str, LockedSeries] = field(default_factory=dict, repr=False, compare=False)

    @property
    def database_path(self) -> Path:
        return database_path(self.lock_path)

    def series_by_uid(self) -> Mapping[str, LockedSeries]:
        if not self._by_uid:
            self._by_uid.update((s.series_uid, s) for s in self.series)
        return self._by_uid


def read_lock(
    lock_path: str | os.PathLike[str],
    *,
    load_images: bool = True,
    text_only_fallback: bool = False,
) -> LockContents:
    """Read and prove the lock pair at ``lock_path`` (finishing an interrupted commit first).

    The result's ``images`` are read lazily, one series per access, each proven again as it
    is read (:class:`store.lockimages.ProvenImages`); nothing holds every image.
    ``load_images``: accepted for compatibility; it changes nothing.
    ``text_only_fallback``: instead of raising when the database is missing or fails its
    proof, return the text lock's series alone and say why.

    Raises:
        LockNotFound: the text lock (or, without the fallback, its database) is missing.
        LockFormatTooNew: written by a newer nbia-audit.
        LockProofError: the pair does not prove itself.
        StoreError: the files cannot be read.
    """
    del load_images  # images are always read lazily now
    lock_path = Path(lock_path)
    recover_interrupted(lock_path)
    text = read_text_lock(lock_path)
    db_path = database_path(lock_path)
    if not db_path.is_file():
        if text_only_fallback:
            return _text_only(lock_path, text, "")
        raise LockNotFound(
            f"{db_path}: lock database not found; it is written beside {lock_path.name} by"
            " `nbia-audit lock` (restore it, or re-run the lock)"
        )
    try:
        try:
            return _prove(lock_path, db_path, text)
        except LockProofError as first:
            # The pair may have been replaced between reading the text and the database
            # (another `lock` committed): read both once more before judging.
            again = read_text_lock(lock_path)
            if again.sha256 == text.sha256:
                raise first from None
            return _prove(lock_path, db_path, again)
    except LockProofError as error:
        if text_only_fallback:
            return _text_only(lock_path, read_text_lock(lock_path), str(error))
        raise


def _text_only(lock_path: Path, text: TextLock, rejected: str) -> LockContents:
    ordered = tuple(
        sorted(text.series, key=lambda s: (s.collection, s.patient_id, s.study_uid, s.series_uid))
    )
    return LockContents(
        lock_path=lock_path,
        header=text.header,
        spec_json=text.spec_json,
        series=ordered,
        images={},
        source=SOURCE_TEXT,
        database_rejected=rejected,
        text_sha256=text.sha256,
    )


def prove_database(lock_path: Path, db_path: Path) -> LockContents:
    """Prove the database at ``db_path`` (not necessarily beside it) against the text lock at
    ``lock_path``, as :func:`read_lock` proves the pair.

    Raises:
        LockFormatTooNew, LockProofError, StoreError: as :func:`read_lock`.
    """
    return _prove(lock_path, db_path, read_text_lock(lock_path))


def _prove(lock_path: Path, db_path: Path, text: TextLock) -> LockContents:
    try:
        conn = connect_read_only(db_path)
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: cannot open the lock database ({exc})") from None
    try:
        conn.execute("BEGIN")  # one snapshot: a concurrent fetch filling images waits
        proof = _Proof(db_path, lock_path.name, conn, text)
        return proof.run(lock_path)
    except (sqlite3.DatabaseError, UnicodeDecodeError, ValueError, TypeError) as exc:
        # A damaged file can hold text that is not UTF-8 or a value of the wrong type in any
        # row: whatever it holds, a database that cannot be read whole proves nothing.
        raise LockProofError(
            f"{db_path}: not a readable nbia-audit lock database ({str(exc)[:200]!r})"
        ) from None
    finally:
        conn.close()


class _Proof:
    """The checks of one database against one text lock, in the order the docstring gives."""

    def __init__(
        self, db_path: Path, text_name: str, conn: sqlite3.Connection, text: TextLock
    ) -> None:
        self.db_path = db_path
        self.text_name = text_name
        self.conn = conn
        self.text = text
        self.seen: set[str] = set()  # series whose images recomputed to the pinned hash
        self.layout = 0  # of the database's tables, known once its schema is checked

    def fail(self, what: str) -> LockProofError:
        return refusal(self.db_path, what)

    def run(self, lock_path: Path) -> LockContents:
        self._check_schema()
        header, spec_json = self._check_meta()
        series = self._check_series()
        images, image_count = self._check_images(series)
        nodes = tuple(node_from_row(r) for r in self._rows("nodes", "level, key"))
        problems = tuple(Problem(**_decoded(r)) for r in self._rows("problems", "series_uid, kind"))
        licenses = tuple(LockedLicense(**_decoded(r)) for r in self._rows("licenses", "name"))
        if header.metadata_digest:
            found = metadata_digest(series, nodes, problems, licenses)
            if found != header.metadata_digest:
                raise self.fail(
                    f"its series descriptions, licenses, hash nodes and problems digest to"
                    f" {_abbrev(found)}, {self.text_name} pins {_abbrev(header.metadata_digest)}"
                )
        return LockContents(
            lock_path=lock_path,
            header=header,
            spec_json=spec_json,
            series=series,
            images=images,
            nodes=nodes,
            problems=problems,
            licenses=licenses,
            image_count=image_count,
            text_sha256=self.text.sha256,
            database_layout=self.layout,
        )

    def _check_schema(self) -> None:
        try:
            applied = {m.name for m in lock_migrations.applied(sqlite_utils.Database(self.conn))}
        except sqlite3.Error as exc:
            raise self.fail(f"not an nbia-audit lock database ({exc})") from None
        unknown = applied - KNOWN_MIGRATIONS
        if unknown:
            raise LockFormatTooNew(
                f"{self.db_path}: written by a newer nbia-audit (schema"
                f" {', '.join(sorted(unknown))}); upgrade nbia-audit to read it"
            )
        if not applied:
            raise self.fail("not an nbia-audit lock database (no schema version)")
        self.layout = layout_of(applied)
        if not self.layout:
            raise self.fail(
                f"not an nbia-audit lock database (schema {', '.join(sorted(applied))})"
            )
        # The schema itself is untrusted input: a view named like a table (say, a recursive
        # one that never ends), a trigger or an extra index would run SQL we did not write.
        # Only the exact schema the migrations create is read.
        odd = first_difference(self.conn, LAYOUT_MIGRATIONS[self.layout])
        if odd:
            raise self.fail(
                f"not an nbia-audit lock database (its schema {odd} as nbia-audit writes it);"
                " restore it from version control or re-run `nbia-audit lock`"
            )

    def _check_meta(self) -> tuple[LockHeader, str]:
        meta = {str(k): from_storable(str(v)) for k, v in self.conn.execute(
            "SELECT key, value FROM meta"
        )}  # fmt: skip
        stamp = meta.get("text_sha256", "")
        if stamp != self.text.sha256:
            raise self.fail(
                f"its stamp names text lock sha256 {_abbrev(stamp or '(none)')}, but"
                f" {self.text_name} is {_abbrev(self.text.sha256)}: it belongs to another lock"
            )
        try:
            header = header_from_meta(meta)
        except (KeyError, ValueError) as exc:
            raise self.fail(f"its header is incomplete or malformed ({exc})") from None
        if header != self.text.header:
            name = next(
                f.name
                for f in fields(LockHeader)
                if getattr(header, f.name) != getattr(self.text.header, f.name)
            )
            raise self.fail(
                f"its header says {name.replace('_', '-')} ="
                f" {_abbrev(str(getattr(header, name)))}, {self.text_name} says"
                f" {_abbrev(str(getattr(self.text.header, name)))}"
            )
        if meta.get("spec") != self.text.spec_json:
            raise self.fail(f"its embedded spec differs from {self.text_name}'s")
        return header, self.text.spec_json

    def _check_series(self) -> tuple[LockedSeries, ...]:
        try:
            rows = [series_from_row(r) for r in self._rows("series", "series_uid")]
        except (TypeError, KeyError) as exc:
            raise self.fail(f"its series table has an unexpected shape ({exc})") from None
        by_uid = {s.series_uid: s for s in rows}
        pinned = {s.series_uid: s for s in self.text.series}
        missing = sorted(set(pinned) - set(by_uid))
        if missing:
            raise self.fail(f"series {missing[0]} pinned by {self.text_name} is not in it")
        extra = sorted(set(by_uid) - set(pinned))
        if extra:
            raise self.fail(f"series {extra[0]} is in it but {self.text_name} does not pin it")
        for uid in sorted(pinned):
            mine, theirs = by_uid[uid], pinned[uid]
            for name in _TEXT_FIELDS:
                if getattr(mine, name) != getattr(theirs, name):
                    raise self.fail(
                        f"series {uid}: {name} is {_abbrev(str(getattr(mine, name)))},"
                        f" {self.text_name} pins {_abbrev(str(getattr(theirs, name)))}"
                    )
        return tuple(
            sorted(rows, key=lambda s: (s.collection, s.patient_id, s.study_uid, s.series_uid))
        )

    def _check_images(self, series: Sequence[LockedSeries]) -> tuple[ProvenImages, int]:
        by_uid = {s.series_uid: s for s in series}
        count = 0
        # One row per series, its MD5s concatenated by SQLite (in no particular order: the
        # series hash sorts them): a million images cost a few thousand Python rows.
        for series_uid, rows, non_null, joined in self.conn.execute(_PER_SERIES[self.layout]):
            if series_uid is None:  # layout 2: a series number no series row has
                raise self.fail("it holds images of a series number that is not in it")
            uid = from_storable(str(series_uid))
            self._judge_series(by_uid, uid, self._md5s(uid, rows, non_null, joined))
            count += rows
        if self.layout == 2:
            # Layout 2 keys images by (series, SOP UID): one SOP UID pinned in two series
            # is an edit its primary key does not stop (layout 1's did).
            twice = self.conn.execute(
                "SELECT sop_uid FROM images GROUP BY sop_uid HAVING count(*) > 1 LIMIT 1"
            ).fetchone()
            if twice is not None:
                raise self.fail(f"it pins image {from_storable(str(twice[0]))} twice")
        self._check_empty_pinned(series)
        (schema_version,) = self.conn.execute("PRAGMA schema_version").fetchone()
        # Only what each later access proves again is kept: the pinned hashes, in lock order.
        images = ProvenImages(
            self.db_path,
            text_name=self.text_name,
            stamp=self.text.sha256,
            schema_version=int(schema_version),
            layout=self.layout,
            hashes={s.series_uid: s.series_hash for s in series if s.series_uid in self.seen},
        )
        return images, count

    def _md5s(
        self, series_uid: str, rows: int, non_null: int, joined: str | None
    ) -> list[str | None]:
        values: list[str | None] = [None] * (rows - non_null)
        if not non_null:
            return values
        assert joined is not None
        if joined.isascii():  # no escaped value (store.storable.ESCAPE is not ASCII); O(1) to ask
            parts = joined.split(",")
            if len(parts) == non_null:
                return values + list(parts)
        # A value with a comma or an escape in it (never written by the archive, but the
        # database may have been edited): read this series' values one by one.
        found = self.conn.execute(image_rows_query(self.layout), (to_storable(series_uid),))
        return values + [md5_text(md5) for _sop, md5, _size in found if md5 is not None]

    def _judge_series(
        self, by_uid: Mapping[str, LockedSeries], uid: str, md5s: list[str | None]
    ) -> None:
        locked = by_uid.get(uid)
        if locked is None:
            raise self.fail(f"it holds images of series {uid}, which the lock does not pin")
        if not locked.images_pinned:
            raise self.fail(
                f"series {uid}: it holds {len(md5s)} image(s) for a series pinned by hash only"
            )
        recomputed = series_hash(md5s)
        if recomputed != locked.series_hash:
            raise self.fail(
                f"series {uid}: its {len(md5s)} image MD5s give {_abbrev(recomputed or '(empty)')},"
                f" {self.text_name} pins {_abbrev(locked.series_hash or '(empty)')}"
            )
        self.seen.add(uid)

    def _check_empty_pinned(self, series: Sequence[LockedSeries]) -> None:
        # A pinned series without image rows recomputes to "": only an empty series may.
        for s in series:
            if s.images_pinned and s.series_uid not in self.seen and s.series_hash:
                raise self.fail(
                    f"series {s.series_uid}: it pins no images, {self.text_name} pins series"
                    f" hash {_abbrev(s.series_hash)}"
                )

    def _rows(self, table: str, order: str) -> list[dict[str, Any]]:
        cursor = self.conn.execute(f"SELECT * FROM {table} ORDER BY {order}")  # noqa: S608
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]


# Per series with images: its UID, rows, non-NULL MD5s and the MD5s as text joined by commas.
_PER_SERIES = {
    1: "SELECT series_uid, count(*), count(archive_md5), group_concat(archive_md5, ',')"
    " FROM images GROUP BY series_uid",
    2: "SELECT s.series_uid, count(*), count(i.archive_md5),"
    f" group_concat({ARCHIVE_MD5_TEXT}, ',')"
    " FROM images i LEFT JOIN series s ON s.series_key = i.series_key GROUP BY i.series_key",
}

# The fields the text lock pins of each series (the rest are covered by metadata-digest).
_TEXT_FIELDS = (
    "series_hash",
    "image_count",
    "bytes",
    "collection",
    "patient_id",
    "study_uid",
    "modality",
    "released",
    "license_name",
    "doi",
)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: from_storable(v) if isinstance(v, str) else v for k, v in row.items()}


def _abbrev(value: str) -> str:
    """Long digests shortened for messages (enough to tell two apart), text bounded."""
    text = value.encode("unicode_escape").decode("ascii")
    if text.startswith("sha256:") and len(text) > 19:
        return text[:19] + "…"
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
        return text[:8] + "…"
    return text if len(text) <= 80 else text[:77] + "..."

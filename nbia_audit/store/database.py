"""The lock database (``dataset.lock.db``): series, images and hierarchy hashes in SQLite.

The schema is versioned with sqlite-utils ``Migrations``; a database that has migrations
this version does not know was written by a newer nbia-audit and is refused. The schema is
documented in docs/lock-format.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from nbia_audit.errors import LockFormatTooNew, LockNotFound, StoreError
from nbia_audit.models import (
    HashNode,
    LockedImage,
    LockedLicense,
    LockedSeries,
    LockHeader,
    Problem,
)
from nbia_audit.store.storable import from_storable, to_storable

__all__ = [
    "CURRENT_LAYOUT",
    "LockDatabase",
    "compact_md5",
    "image_rows_query",
    "layout_of",
    "md5_text",
    "connect_read_only",
    "metadata_digest",
    "storable_row",
    "write_lock_database",
]

MIGRATION_SET = "nbia-audit-lock"
lock_migrations = Migrations(MIGRATION_SET)


@lock_migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("series").create(
        {
            "series_uid": str,
            "collection": str,
            "patient_id": str,
            "study_uid": str,
            "modality": str,
            "description": str,
            "series_number": str,
            "body_part": str,
            "manufacturer": str,
            "image_count": int,
            "bytes": int,
            "series_hash": str,
            "released": str,
            "max_submission": str,
            "license_name": str,
            "license_url": str,
            "doi": str,
            "third_party": int,
            "images_pinned": int,
        },
        pk="series_uid",
    )
    db.table("images").create(
        {"sop_uid": str, "series_uid": str, "archive_md5": str, "size": int},
        pk="sop_uid",
        foreign_keys=[("series_uid", "series", "series_uid")],
    )
    db.table("images").create_index(["series_uid"])
    db.table("nodes").create(
        {
            "level": str,
            "key": str,
            "computed_hash": str,
            "archive_hash": str,
            "covers_whole_node": int,
        },
        pk=("level", "key"),
    )
    db.table("problems").create({"series_uid": str, "kind": str, "detail": str})
    db.table("licenses").create(
        {"name": str, "short_name": str, "url": str, "commercial_use": str}, pk="name"
    )


# Layout 1 (m001 alone) is how nbia-audit wrote databases before layout 2; it stays readable.
format1_migrations = Migrations(MIGRATION_SET)
format1_migrations()(m001_initial)

# The series of a database in layout 2 are numbered; its images name the number.
_SERIES_COLUMNS = (
    "series_uid, collection, patient_id, study_uid, modality, description, series_number,"
    " body_part, manufacturer, image_count, bytes, series_hash, released, max_submission,"
    " license_name, license_url, doi, third_party, images_pinned"
)


@lock_migrations()
def m002_compact(db: sqlite_utils.Database) -> None:
    """Layout 2: numbered series; images keyed (series number, SOP UID) without a rowid;
    an archive MD5 of exactly 32 lowercase hex digits held as its 16 bytes; no SOP index.

    Converts the rows of a layout 1 database in place (``nbia-audit migrate``), and makes an
    empty layout 2 database from an empty one.
    """
    conn = db.conn
    conn.create_function("nbia_compact_md5", 1, compact_md5, deterministic=True)
    conn.execute(
        "CREATE TABLE series_numbered (series_key INTEGER PRIMARY KEY,"
        " series_uid TEXT NOT NULL UNIQUE, collection TEXT, patient_id TEXT, study_uid TEXT,"
        " modality TEXT, description TEXT, series_number TEXT, body_part TEXT,"
        " manufacturer TEXT, image_count INTEGER, bytes INTEGER, series_hash TEXT,"
        " released TEXT, max_submission TEXT, license_name TEXT, license_url TEXT, doi TEXT,"
        " third_party INTEGER, images_pinned INTEGER)"
    )
    conn.execute(
        f"INSERT INTO series_numbered ({_SERIES_COLUMNS})"  # noqa: S608
        f" SELECT {_SERIES_COLUMNS} FROM series ORDER BY series_uid"
    )
    conn.execute(
        "CREATE TABLE images_keyed (series_key INTEGER NOT NULL, sop_uid TEXT NOT NULL,"
        " archive_md5, size INTEGER, PRIMARY KEY (series_key, sop_uid)) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO images_keyed (series_key, sop_uid, archive_md5, size)"
        " SELECT s.series_key, i.sop_uid, nbia_compact_md5(i.archive_md5), i.size"
        " FROM images i JOIN series_numbered s ON s.series_uid = i.series_uid"
        " ORDER BY s.series_key, i.sop_uid"
    )
    conn.execute("DROP TABLE images")
    conn.execute("DROP TABLE series")
    conn.execute("ALTER TABLE series_numbered RENAME TO series")
    conn.execute("ALTER TABLE images_keyed RENAME TO images")
    # For people (Datasette, the sqlite3 shell): the images as layout 1 showed them.
    conn.execute(
        "CREATE VIEW images_readable AS SELECT s.series_uid AS series_uid, i.sop_uid AS sop_uid,"
        f" {ARCHIVE_MD5_TEXT} AS archive_md5, i.size AS size"
        " FROM images i JOIN series s ON s.series_key = i.series_key"
    )


# An archive MD5 as the archive's string, in SQL (layout 2 holds 32 lowercase hex as 16 bytes).
ARCHIVE_MD5_TEXT = (
    "CASE WHEN typeof(i.archive_md5) = 'blob' THEN lower(hex(i.archive_md5))"
    " ELSE i.archive_md5 END"
)

KNOWN_MIGRATIONS = frozenset({"m001_initial", "m002_compact"})
LAYOUT_MIGRATIONS = {1: format1_migrations, 2: lock_migrations}
CURRENT_LAYOUT = 2


def layout_of(applied: set[str]) -> int:
    """The layout a database's applied migrations give it (0: none of ours)."""
    if applied == {"m001_initial", "m002_compact"}:
        return 2
    if applied == {"m001_initial"}:
        return 1
    return 0


_HEX = frozenset("0123456789abcdef")


SqlValue = str | bytes | int | float | None


def compact_md5(value: SqlValue) -> SqlValue:
    """The archive MD5 as layout 2 stores it: 32 lowercase hex digits as their 16 bytes, any
    other string (upper case, short, blank) verbatim, so it reads back exactly."""
    if isinstance(value, str) and len(value) == 32 and _HEX.issuperset(value):
        return bytes.fromhex(value)
    return value


def image_rows_query(layout: int) -> str:
    """SQL for one series' images (``?``: its UID) as (sop_uid, archive_md5, size), by SOP UID."""
    if layout == 1:
        return (
            "SELECT sop_uid, archive_md5, size FROM images WHERE series_uid = ? ORDER BY sop_uid"
        )
    return (
        "SELECT sop_uid, archive_md5, size FROM images"
        " WHERE series_key = (SELECT series_key FROM series WHERE series_uid = ?)"
        " ORDER BY sop_uid"
    )


_HEADER_FIELDS = {f.name: f.type for f in dataclasses.fields(LockHeader)}


def storable_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row whose strings SQLite can hold (see store/storable.py); other values unchanged."""
    return {k: to_storable(v) if isinstance(v, str) else v for k, v in row.items()}


def _loaded_row(row: dict[str, Any]) -> dict[str, Any]:
    # An ASCII string holds no escape (store.storable.ESCAPE is not ASCII), and asking is O(1).
    return {
        k: from_storable(v) if isinstance(v, str) and not v.isascii() else v
        for k, v in row.items()
    }


def metadata_digest(
    series: Iterable[LockedSeries],
    nodes: Iterable[HashNode],
    problems: Iterable[Problem],
    licenses: Iterable[LockedLicense],
) -> str:
    """``sha256:<hex>`` over everything the database holds that the text lock does not pin.

    The text lock's header carries it, so the database's descriptions, licenses (with their
    commercial-use flags), hash nodes and problems are proven by the text as firmly as its
    images are by the series hashes. ``images_pinned`` is left out: fetch changes it when it
    fills in a series-only lock, and the images it pins are proven by the series hash.
    """

    def rows(items: Iterable[Any], key: tuple[str, ...], drop: str = "") -> list[list[Any]]:
        # Field by field rather than dataclasses.asdict: this runs on every lock read.
        listed = list(items)
        if not listed:
            return []
        names = [f.name for f in dataclasses.fields(listed[0]) if f.name != drop]
        listed.sort(key=lambda x: tuple(str(getattr(x, k)) for k in key))
        return [names] + [[getattr(x, n) for n in names] for x in listed]

    document = {
        "series": rows(series, ("series_uid",), drop="images_pinned"),
        "nodes": rows(nodes, ("level", "key")),
        "problems": rows(problems, ("series_uid", "kind", "detail")),
        "licenses": rows(licenses, ("name",)),
    }
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open a database for reading only: works on a read-only checkout or share.

    Raises:
        sqlite3.Error: it cannot be opened.
    """
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.isolation_level = None  # transactions are begun explicitly
    return conn


def _connect(path: Path) -> sqlite_utils.Database:
    try:
        conn = sqlite3.connect(str(path))
        conn.execute("PRAGMA foreign_keys = ON")
        return sqlite_utils.Database(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the lock database: {exc}") from exc


def write_lock_database(
    path: Path,
    header: LockHeader,
    spec_json: str,
    series: Iterable[LockedSeries],
    images: Iterable[LockedImage],
    nodes: Iterable[HashNode],
    problems: Iterable[Problem] = (),
    licenses: Iterable[LockedLicense] = (),
) -> None:
    """Write a complete lock database to ``path``, which must not exist yet.

    The caller writes to a temporary name and renames it into place (see store/textlock.py), so a
    reader never sees a half-written database.

    Raises:
        StoreError: SQLite failed (disk full, permissions).
    """
    if path.exists():
        raise StoreError(f"{path}: refusing to overwrite an existing file")
    db = _connect(path)
    try:
        lock_migrations.apply(db)
        with db.atomic():
            meta = {k: str(v) for k, v in dataclasses.asdict(header).items()}
            meta["spec"] = spec_json
            db.table("meta").insert_all(
                (storable_row({"key": k, "value": v}) for k, v in sorted(meta.items())),
                pk="key",
            )
            ordered = sorted(series, key=lambda s: s.series_uid)
            db.table("series").insert_all((_series_row(s) for s in ordered), batch_size=1000)
            _insert_images(db.conn, path, _series_keys(db.conn), images)
            db.table("nodes").insert_all(
                (
                    storable_row(
                        {**dataclasses.asdict(n), "covers_whole_node": int(n.covers_whole_node)}
                    )
                    for n in nodes
                ),
                batch_size=1000,
            )
            db.table("problems").insert_all(storable_row(dataclasses.asdict(p)) for p in problems)
            db.table("licenses").insert_all(storable_row(dataclasses.asdict(x)) for x in licenses)
        db.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot write the lock database: {exc}") from exc
    finally:
        db.close()


def _series_keys(conn: sqlite3.Connection) -> dict[str, int]:
    """Series UID (as the archive gave it) -> its number in a layout 2 database."""
    return {
        from_storable(str(uid)): int(key)
        for key, uid in conn.execute("SELECT series_key, series_uid FROM series")
    }


def _insert_images(
    conn: sqlite3.Connection, path: Path, keys: dict[str, int], images: Iterable[LockedImage]
) -> None:
    """Insert images into a layout 2 database, streaming (one batch of rows at a time)."""

    def rows() -> Iterator[tuple[int, str, SqlValue, int | None]]:
        for image in images:
            key = keys.get(image.series_uid)
            if key is None:
                raise StoreError(
                    f"{path}: image {image.sop_uid} names series {image.series_uid},"
                    " which is not in the lock"
                )
            md5 = None if image.archive_md5 is None else compact_md5(to_storable(image.archive_md5))
            yield key, to_storable(image.sop_uid), md5, image.size

    conn.executemany(
        "INSERT INTO images (series_key, sop_uid, archive_md5, size) VALUES (?, ?, ?, ?)", rows()
    )


def _series_row(series: LockedSeries) -> dict[str, Any]:
    row = dataclasses.asdict(series)
    row["third_party"] = int(series.third_party)
    row["images_pinned"] = int(series.images_pinned)
    return storable_row(row)


def header_from_meta(meta: dict[str, str]) -> LockHeader:
    """The lock header from the ``meta`` table's text values.

    Raises:
        KeyError, ValueError: a field is missing or malformed.
    """
    values: dict[str, Any] = {}
    for name, kind in _HEADER_FIELDS.items():
        if name == "metadata_digest" and name not in meta and meta.get("format") == "1":
            values[name] = ""  # format 1 databases predate it
            continue
        raw = meta[name]
        if kind == "int":
            values[name] = int(raw)
        elif kind == "bool":
            if raw not in ("True", "False"):
                raise ValueError(f"{name} is {raw!r}, not True or False")
            values[name] = raw == "True"
        else:
            values[name] = raw
    return LockHeader(**values)


def series_from_row(row: dict[str, Any]) -> LockedSeries:
    """A series from its database row (booleans are stored as integers)."""
    values = _loaded_row(row)
    values.pop("series_key", None)  # layout 2's own numbering, not part of the series
    values["third_party"] = bool(values["third_party"])
    values["images_pinned"] = bool(values["images_pinned"])
    return LockedSeries(**values)


def node_from_row(row: dict[str, Any]) -> HashNode:
    values = _loaded_row(row)
    values["covers_whole_node"] = bool(values["covers_whole_node"])
    return HashNode(**values)


class LockDatabase:
    """Read access to a lock database, plus the one update fetch makes (filling images)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise LockNotFound(
                f"{path}: lock database not found; run `nbia-audit lock` to create it"
            )
        self.path = path
        self.db = _connect(path)
        try:
            applied = {m.name for m in lock_migrations.applied(self.db)}
            version = self.db.table("meta").get("format")["value"] if applied else None
        except (sqlite3.Error, sqlite_utils.db.NotFoundError) as exc:
            raise StoreError(f"{path}: not an nbia-audit lock database ({exc})") from exc
        unknown = applied - KNOWN_MIGRATIONS
        if unknown:
            raise LockFormatTooNew(
                f"{path}: written by a newer nbia-audit (schema {', '.join(sorted(unknown))});"
                " upgrade nbia-audit to read it"
            )
        if not applied or version is None or not layout_of(applied):
            raise StoreError(f"{path}: not an nbia-audit lock database")
        self.layout = layout_of(applied)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LockDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self) -> LockHeader:
        meta = {row["key"]: from_storable(row["value"]) for row in self.db.table("meta").rows}
        return header_from_meta(meta)

    def spec_json(self) -> str:
        return from_storable(str(self.db.table("meta").get("spec")["value"]))

    def series(self) -> Iterator[LockedSeries]:
        for row in self.db.table("series").rows_where(
            order_by="collection, patient_id, study_uid, series_uid"
        ):
            yield series_from_row(row)

    def images(self, series_uid: str | None = None) -> Iterator[LockedImage]:
        """The pinned images (of one series, or all), by series UID and SOP UID."""
        if series_uid is not None:
            uids = [series_uid]
        else:
            query = "SELECT DISTINCT series_uid FROM series ORDER BY series_uid"
            uids = [from_storable(str(r[0])) for r in self.db.execute(query)]
        for uid in uids:
            rows = self.db.execute(image_rows_query(self.layout), [to_storable(uid)])
            for sop_uid, md5, size in rows.fetchall():
                yield LockedImage(_text(sop_uid), uid, _md5_text(md5), size)

    def nodes(self) -> Iterator[HashNode]:
        for row in self.db.table("nodes").rows_where(order_by="level, key"):
            yield node_from_row(row)

    def problems(self) -> Iterator[Problem]:
        for row in self.db.table("problems").rows_where(order_by="series_uid, kind"):
            yield Problem(**_loaded_row(row))

    def licenses(self) -> Iterator[LockedLicense]:
        for row in self.db.table("licenses").rows_where(order_by="name"):
            yield LockedLicense(**_loaded_row(row))

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def fill_images(self, series_uid: str, images: Iterable[LockedImage]) -> bool:
        """Pin the images of a series locked by its hash only, in one transaction.

        ``fetch`` calls this once the series' images verified against its pinned hash; the
        header and root digest do not change (they commit to the series hash already).
        Returns False, changing nothing, when exactly these images are pinned already
        (another fetch of the same lock got there first).

        Raises:
            StoreError: the series is not in the lock, other images are pinned for it, an
                image belongs to another series, or SQLite failed.
        """
        wanted = list(images)
        if any(image.series_uid != series_uid for image in wanted):
            raise StoreError(f"{self.path}: an image to pin belongs to another series")
        conn = self.db.conn
        try:
            # IMMEDIATE takes the write lock first: two fetches filling one lock at once wait
            # for each other instead of deadlocking on a read-to-write lock upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                filled = self._fill(series_uid, wanted)
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot pin the images of {series_uid}: {exc}") from exc
        return filled

    def _fill(self, series_uid: str, wanted: list[LockedImage]) -> bool:
        found = self.db.execute(
            "SELECT images_pinned FROM series WHERE series_uid = ?", [series_uid]
        ).fetchone()
        if found is None:
            raise StoreError(f"{self.path}: series {series_uid} is not in the lock")
        if found[0]:
            pinned = {(i.sop_uid, i.archive_md5) for i in self.images(series_uid)}
            if pinned == {(i.sop_uid, i.archive_md5) for i in wanted}:
                return False
            raise StoreError(f"{self.path}: series {series_uid} has other images pinned")
        if self.layout == 1:
            rows = (storable_row(dataclasses.asdict(i)) for i in wanted)
            self.db.table("images").insert_all(rows, batch_size=5000)
        else:
            _insert_images(self.db.conn, self.path, _series_keys(self.db.conn), wanted)
        self.db.execute("UPDATE series SET images_pinned = 1 WHERE series_uid = ?", [series_uid])
        return True


def _text(value: str) -> str:
    # An ASCII string holds no escape (store.storable.ESCAPE is not ASCII), and asking is O(1).
    return value if value.isascii() else from_storable(value)


def md5_text(value: object) -> str | None:
    """An archive MD5 as read from either layout, as the archive's string.

    Raises:
        TypeError: the stored value is neither text, 16-byte-style bytes nor NULL (an edit).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return _text(value)
    raise TypeError(f"an archive MD5 stored as {type(value).__name__}")


_md5_text = md5_text

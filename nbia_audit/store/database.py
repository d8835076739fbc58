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
    "LockDatabase",
    "image_rows_query",
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


KNOWN_MIGRATIONS = frozenset({"m001_initial"})


def image_rows_query(layout: int) -> str:
    """SQL for one series' images (``?``: its UID) as (sop_uid, archive_md5, size), by SOP UID."""
    del layout  # one layout so far
    return "SELECT sop_uid, archive_md5, size FROM images WHERE series_uid = ? ORDER BY sop_uid"
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
            db.table("series").insert_all((_series_row(s) for s in series), batch_size=1000)
            db.table("images").insert_all(
                (storable_row(dataclasses.asdict(i)) for i in images), batch_size=5000
            )
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
        if not applied or version is None:
            raise StoreError(f"{path}: not an nbia-audit lock database")

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
        where, args = ("series_uid = ?", [series_uid]) if series_uid else (None, [])
        for row in self.db.table("images").rows_where(where, args, order_by="series_uid, sop_uid"):
            yield LockedImage(**_loaded_row(row))

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
        rows = (storable_row(dataclasses.asdict(i)) for i in wanted)
        self.db.table("images").insert_all(rows, batch_size=5000)
        self.db.execute("UPDATE series SET images_pinned = 1 WHERE series_uid = ?", [series_uid])
        return True

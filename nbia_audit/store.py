"""The lock database (``dataset.lock.db``): series, images and hierarchy hashes in SQLite.

The schema is versioned with sqlite-utils ``Migrations``; a database that has migrations
this version does not know was written by a newer nbia-audit and is refused. The schema is
documented in docs/lock-format.md.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .errors import LockFormatTooNew, LockNotFound, StoreError
from .models import HashNode, LockedImage, LockedLicense, LockedSeries, LockHeader, Problem

__all__ = ["LockDatabase", "write_lock_database"]

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
_HEADER_FIELDS = {f.name: f.type for f in dataclasses.fields(LockHeader)}


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

    The caller writes to a temporary name and renames it into place (see lockfile.py), so a
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
                ({"key": k, "value": v} for k, v in sorted(meta.items())), pk="key"
            )
            db.table("series").insert_all((_series_row(s) for s in series), batch_size=1000)
            db.table("images").insert_all((dataclasses.asdict(i) for i in images), batch_size=5000)
            db.table("nodes").insert_all(
                (
                    {**dataclasses.asdict(n), "covers_whole_node": int(n.covers_whole_node)}
                    for n in nodes
                ),
                batch_size=1000,
            )
            db.table("problems").insert_all(dataclasses.asdict(p) for p in problems)
            db.table("licenses").insert_all(dataclasses.asdict(x) for x in licenses)
        db.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot write the lock database: {exc}") from exc
    finally:
        db.close()


def _series_row(series: LockedSeries) -> dict[str, Any]:
    row = dataclasses.asdict(series)
    row["third_party"] = int(series.third_party)
    row["images_pinned"] = int(series.images_pinned)
    return row


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
        meta = {row["key"]: row["value"] for row in self.db.table("meta").rows}
        values: dict[str, Any] = {}
        for name, kind in _HEADER_FIELDS.items():
            raw = meta[name]
            if kind == "int":
                values[name] = int(raw)
            elif kind == "bool":
                values[name] = raw == "True"
            else:
                values[name] = raw
        return LockHeader(**values)

    def spec_json(self) -> str:
        return str(self.db.table("meta").get("spec")["value"])

    def series(self) -> Iterator[LockedSeries]:
        for row in self.db.table("series").rows_where(
            order_by="collection, patient_id, study_uid, series_uid"
        ):
            row["third_party"] = bool(row["third_party"])
            row["images_pinned"] = bool(row["images_pinned"])
            yield LockedSeries(**row)

    def images(self, series_uid: str | None = None) -> Iterator[LockedImage]:
        where, args = ("series_uid = ?", [series_uid]) if series_uid else (None, [])
        for row in self.db.table("images").rows_where(where, args, order_by="series_uid, sop_uid"):
            yield LockedImage(**row)

    def nodes(self) -> Iterator[HashNode]:
        for row in self.db.table("nodes").rows_where(order_by="level, key"):
            row["covers_whole_node"] = bool(row["covers_whole_node"])
            yield HashNode(**row)

    def problems(self) -> Iterator[Problem]:
        for row in self.db.table("problems").rows_where(order_by="series_uid, kind"):
            yield Problem(**row)

    def licenses(self) -> Iterator[LockedLicense]:
        for row in self.db.table("licenses").rows_where(order_by="name"):
            yield LockedLicense(**row)

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
        rows = [dataclasses.asdict(i) for i in images]
        if any(row["series_uid"] != series_uid for row in rows):
            raise StoreError(f"{self.path}: an image to pin belongs to another series")
        conn = self.db.conn
        try:
            # IMMEDIATE takes the write lock first: two fetches filling one lock at once wait
            # for each other instead of deadlocking on a read-to-write lock upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                filled = self._fill(series_uid, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot pin the images of {series_uid}: {exc}") from exc
        return filled

    def _fill(self, series_uid: str, rows: list[dict[str, Any]]) -> bool:
        found = self.db.execute(
            "SELECT images_pinned FROM series WHERE series_uid = ?", [series_uid]
        ).fetchone()
        if found is None:
            raise StoreError(f"{self.path}: series {series_uid} is not in the lock")
        if found[0]:
            pinned = {(i.sop_uid, i.archive_md5) for i in self.images(series_uid)}
            if pinned == {(r["sop_uid"], r["archive_md5"]) for r in rows}:
                return False
            raise StoreError(f"{self.path}: series {series_uid} has other images pinned")
        self.db.table("images").insert_all(rows, batch_size=5000)
        self.db.execute("UPDATE series SET images_pinned = 1 WHERE series_uid = ?", [series_uid])
        return True

"""A tiny writer of layout 1 lock databases, as nbia-audit wrote them before layout 2.

Layout 1 must stay readable by every verb: tests turn a pair written today into its layout 1
form (same rows, same stamp) with the layout 1 migration itself, and run the verbs on it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from nbia_audit.store.database import format1_migrations
from nbia_audit.store.textlock import database_path

_SERIES = (
    "series_uid, collection, patient_id, study_uid, modality, description, series_number,"
    " body_part, manufacturer, image_count, bytes, series_hash, released, max_submission,"
    " license_name, license_url, doi, third_party, images_pinned"
)


def rewrite_as_layout1(lock_path: Path) -> Path:
    """Rewrite the (layout 2) database beside ``lock_path`` in layout 1; returns its path."""
    db_path = database_path(lock_path)
    made = db_path.with_name("layout1.tmp")
    conn = sqlite3.connect(made)
    try:
        format1_migrations.apply(sqlite_utils.Database(conn))
        conn.execute("ATTACH DATABASE ? AS old", (str(db_path),))
        with conn:
            conn.execute("INSERT INTO meta SELECT key, value FROM old.meta")
            conn.execute(f"INSERT INTO series ({_SERIES}) SELECT {_SERIES} FROM old.series")  # noqa: S608
            conn.execute(
                "INSERT INTO images (sop_uid, series_uid, archive_md5, size)"
                " SELECT i.sop_uid, s.series_uid, CASE WHEN typeof(i.archive_md5) = 'blob'"
                " THEN lower(hex(i.archive_md5)) ELSE i.archive_md5 END, i.size"
                " FROM old.images i JOIN old.series s ON s.series_key = i.series_key"
            )
            for table in ("nodes", "problems", "licenses"):
                conn.execute(f"INSERT INTO {table} SELECT * FROM old.{table}")  # noqa: S608
        conn.execute("DETACH DATABASE old")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    os.replace(made, db_path)
    return db_path


def layout_migrations(db_path: Path) -> set[str]:
    conn = sqlite3.connect(db_path)
    try:
        return {str(r[0]) for r in conn.execute("SELECT name FROM _sqlite_migrations")}
    finally:
        conn.close()

"""Rewrite a lock database in the current layout (``nbia-audit migrate``); the text lock stays.

Layout 1 (nbia-audit up to this release) keeps about 376 bytes per image; layout 2 about a
third of that (docs/lock-format.md). Both read everywhere; migrating only makes the file
smaller. The pair is proven first; the new database is made beside it under a temporary name
(a copy of the proven one, converted by the layout 2 migration and compacted), proven against
the text lock on its own, and only then renamed over the old one.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from nbia_audit.errors import StoreError
from nbia_audit.store.database import CURRENT_LAYOUT, connect_read_only, lock_migrations
from nbia_audit.store.reader import prove_database, read_lock
from nbia_audit.store.textlock import database_path, replace_database

__all__ = ["Migrated", "migrate_lock"]


@dataclass(frozen=True, slots=True)
class Migrated:
    """What ``migrate_lock`` did: ``changed`` False when the database was current already."""

    database: Path
    changed: bool
    layout_before: int
    layout_after: int
    bytes_before: int
    bytes_after: int
    images: int


def migrate_lock(lock_path: str | os.PathLike[str]) -> Migrated:
    """Rewrite the database of the lock pair at ``lock_path`` in the current layout.

    Raises:
        LockNotFound, LockProofError, StoreError: the pair is missing or does not prove itself
            (nothing is changed), or the new database cannot be written or does not prove
            itself (the old one stays).
    """
    lock_path = Path(lock_path)
    before = read_lock(lock_path)
    db_path = database_path(lock_path)
    size_before = db_path.stat().st_size
    if before.database_layout == CURRENT_LAYOUT:
        return Migrated(
            db_path, False, CURRENT_LAYOUT, CURRENT_LAYOUT, size_before, size_before,
            before.image_count,
        )  # fmt: skip

    def write(new_db: Path) -> None:
        _convert(db_path, new_db)
        after = prove_database(lock_path, new_db)
        if after.database_layout != CURRENT_LAYOUT or after.image_count != before.image_count:
            raise StoreError(
                f"{db_path}: the migrated database holds {after.image_count} images in layout"
                f" {after.database_layout}, not {before.image_count} in layout {CURRENT_LAYOUT};"
                " nothing was changed"
            )

    replace_database(lock_path, write, text_sha256=before.text_sha256)
    return Migrated(
        db_path, True, before.database_layout, CURRENT_LAYOUT, size_before,
        db_path.stat().st_size, before.image_count,
    )  # fmt: skip


def _convert(db_path: Path, new_db: Path) -> None:
    """A copy of the database at ``db_path`` (one consistent snapshot), migrated, compacted."""
    source = connect_read_only(db_path)
    target = sqlite3.connect(str(new_db))
    try:
        source.backup(target)
        source.close()
        lock_migrations.apply(sqlite_utils.Database(target))
        target.execute("VACUUM")
        target.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path}: cannot migrate the lock database: {exc}") from exc
    finally:
        source.close()
        target.close()

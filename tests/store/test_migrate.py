"""Layout 1 lock databases (nbia-audit's before layout 2) stay readable, and migrate.

``tests/store/data/layout1/`` is a pair written by the previous release's own code (its
``write_pair``), with the archive's odd MD5 strings: NULL, unpadded, upper case, a blank, a
comma, a lone surrogate through the storable escape, and an empty series.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from nbia_audit.merkle import series_hash
from nbia_audit.store.reader import read_lock
from nbia_audit.store.textlock import database_path
from tests.support.cli import run_cli
from tests.support.layout1 import layout_migrations

DATA = Path(__file__).parent / "data" / "layout1"
ROOT = "1.2.826.0.1.3680043.8.498"
WRITTEN: dict[str, tuple[str | None, ...]] = {  # what the previous release was given to write
    f"{ROOT}.1": (
        "0cc175b9c0f1b6a831c399e269772661",
        "92eb5ffee6ae2fec3ad71c777531578f",
        "4a8a08f09d37b73795649038408b5f33",
    ),
    f"{ROOT}.2": (None, "0cc175b9c0f1b6a831c399e269772661", "1b6a"),
    f"{ROOT}.3": ("0B" + "0" * 30, "0a" + "0" * 30, " "),
    f"{ROOT}.4": ("ab,cd", "ef"),
    f"{ROOT}.5": ("\ud835", "\U0010ffff"),
}
LAYOUT1 = {"m001_initial"}
LAYOUT2 = {"m001_initial", "m002_compact"}


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    for name in ("dataset.lock", "dataset.lock.db"):
        shutil.copy2(DATA / name, tmp_path / name)
    return tmp_path / "dataset.lock"


def _images(lock: Path) -> dict[str, tuple[tuple[str, str | None, int | None], ...]]:
    contents = read_lock(lock)
    return {
        uid: tuple((i.sop_uid, i.archive_md5, i.size) for i in images)
        for uid, images in contents.images.items()
    }


def _expected() -> dict[str, tuple[tuple[str, str | None, int | None], ...]]:
    return {
        uid: tuple(sorted((f"{uid}.{n}", m, None) for n, m in enumerate(md5s)))
        for uid, md5s in WRITTEN.items()
    }


def test_a_layout_1_pair_of_the_previous_release_is_read_and_proven(lock: Path) -> None:
    assert layout_migrations(database_path(lock)) == LAYOUT1
    contents = read_lock(lock)
    assert contents.database_layout == 1 and contents.image_count == 13
    assert _images(lock) == _expected()
    for uid, md5s in WRITTEN.items():
        assert series_hash(i.archive_md5 for i in contents.images[uid]) == series_hash(md5s)


def test_migrate_rewrites_the_database_in_layout_2_and_leaves_the_text_lock(lock: Path) -> None:
    text = lock.read_bytes()
    result = run_cli("migrate", str(lock))
    assert result.exit_code == 0, result.output
    assert "from layout 1 to 2" in result.output and "13 images" in result.output
    assert layout_migrations(database_path(lock)) == LAYOUT2
    assert lock.read_bytes() == text
    assert read_lock(lock).database_layout == 2
    assert _images(lock) == _expected()  # every odd MD5 string read back exactly
    assert not list(lock.parent.glob("*.new*"))
    again = run_cli("migrate", str(lock))
    assert again.exit_code == 0 and "nothing changed" in again.output


def test_migrate_refuses_a_pair_that_does_not_prove_itself_and_changes_nothing(
    lock: Path,
) -> None:
    import sqlite3

    conn = sqlite3.connect(database_path(lock))
    with conn:
        conn.execute(f"UPDATE images SET archive_md5 = '{'0' * 32}' WHERE sop_uid = '{ROOT}.1.0'")
    conn.close()
    before = hashlib.sha256(database_path(lock).read_bytes()).hexdigest()
    result = run_cli("migrate", str(lock))
    assert result.exit_code == 3 and f"series {ROOT}.1" in result.output
    assert hashlib.sha256(database_path(lock).read_bytes()).hexdigest() == before
    assert layout_migrations(database_path(lock)) == LAYOUT1


def test_a_migration_killed_before_its_rename_leaves_the_old_database_in_force(
    lock: Path,
) -> None:
    # What a killed migration leaves: its half-written database under the temporary name.
    partial = database_path(lock).with_name("dataset.lock.db.new")
    partial.write_bytes(database_path(lock).read_bytes()[:4096])
    assert read_lock(lock).database_layout == 1
    assert not partial.exists()
    assert _images(lock) == _expected()


def test_a_layout_2_database_is_smaller_for_the_same_pins(lock: Path) -> None:
    before = database_path(lock).stat().st_size
    assert run_cli("migrate", str(lock)).exit_code == 0
    assert database_path(lock).stat().st_size < before

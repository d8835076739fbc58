"""A proven lock's images are read one series per access, and proven again as they are read.

The proof at read time is no longer the last word: a database edited (or replaced) after
``read_lock`` proved it must not hand out its images. And nothing holds every image.
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from nbia_audit.merkle import series_hash
from nbia_audit.models import LockedImage
from nbia_audit.store.reader import LockProofError, read_lock
from nbia_audit.store.textlock import database_path
from tests.support.lock_tools import write_pair


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _series(uid: str, count: int) -> tuple[str, str, tuple[tuple[str, str | None], ...]]:
    images = tuple((f"{uid}.{i}", _md5(f"{uid}/{i}")) for i in range(count))
    return uid, series_hash(m for _s, m in images), images


SERIES = [_series("9.8.7.6.1", 4), _series("9.8.7.6.2", 3), _series("9.8.7.6.3", 5)]
KEY_OF_1 = "(SELECT series_key FROM series WHERE series_uid = '9.8.7.6.1')"
KEY_OF_2 = "(SELECT series_key FROM series WHERE series_uid = '9.8.7.6.2')"


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return write_pair(tmp_path / "dataset.lock", SERIES)


def _sql(lock: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(database_path(lock))
    try:
        with conn:
            assert conn.execute(statement, args).rowcount != 0, statement
    finally:
        conn.close()


def test_images_come_series_by_series_in_lock_order_sorted_by_sop(lock: Path) -> None:
    contents = read_lock(lock)
    assert list(contents.images) == [s.series_uid for s in contents.series]
    assert len(contents.images) == 3 and "9.8.7.6.2" in contents.images
    for uid, _hash, images in SERIES:
        got = contents.images[uid]
        assert [i.sop_uid for i in got] == sorted(sop for sop, _m in images)
        assert {(i.sop_uid, i.archive_md5) for i in got} == set(images)
        assert all(i.series_uid == uid for i in got)
    assert contents.images.get("9.8.7.6.999") is None
    with pytest.raises(KeyError):
        contents.images["9.8.7.6.999"]


def test_reading_a_lock_holds_no_image(lock: Path) -> None:
    contents = read_lock(lock)
    gc.collect()
    mine = [o for o in gc.get_objects() if isinstance(o, LockedImage)]
    assert not [o for o in mine if o.series_uid.startswith("9.8.7.6.")]
    assert contents.image_count == 12


def test_an_md5_edited_after_the_proof_is_refused_when_its_series_is_read(lock: Path) -> None:
    contents = read_lock(lock)
    assert len(contents.images["9.8.7.6.1"]) == 4  # proven and readable before the edit
    _sql(lock, "UPDATE images SET archive_md5 = ? WHERE sop_uid = ?", "0" * 32, "9.8.7.6.1.0")
    with pytest.raises(LockProofError, match=r"series 9\.8\.7\.6\.1: since it was proven"):
        contents.images["9.8.7.6.1"]
    with pytest.raises(LockProofError):
        dict(contents.images.items())
    assert len(contents.images["9.8.7.6.2"]) == 3  # the other series still prove themselves


@pytest.mark.parametrize(
    "edit",
    [
        "DELETE FROM images WHERE sop_uid = '9.8.7.6.2.1'",
        f"DELETE FROM images WHERE series_key = {KEY_OF_2}",
        f"UPDATE images SET series_key = {KEY_OF_1} WHERE sop_uid = '9.8.7.6.2.1'",
        "UPDATE series SET series_key = 99 WHERE series_uid = '9.8.7.6.2'",
        "UPDATE images SET archive_md5 = upper(hex(archive_md5)) WHERE sop_uid = '9.8.7.6.2.0'",
        "UPDATE meta SET value = 'f' WHERE key = 'text_sha256'",
        "DELETE FROM meta WHERE key = 'text_sha256'",
    ],
)
def test_an_edit_after_the_proof_is_refused(lock: Path, edit: str) -> None:
    contents = read_lock(lock)
    _sql(lock, edit)
    with pytest.raises(LockProofError, match="since it was proven"):
        contents.images["9.8.7.6.2"]


def test_a_schema_change_after_the_proof_is_refused(lock: Path) -> None:
    contents = read_lock(lock)
    _sql(lock, "CREATE INDEX extra ON images (archive_md5)")
    with pytest.raises(LockProofError, match="schema changed since it was proven"):
        contents.images["9.8.7.6.2"]


def test_a_database_of_another_lock_put_in_place_after_the_proof_is_refused(
    lock: Path, tmp_path: Path
) -> None:
    other = write_pair(tmp_path / "other" / "dataset.lock", SERIES[:2])
    contents = read_lock(lock)
    shutil.copy2(database_path(other), database_path(lock))
    with pytest.raises(LockProofError):
        contents.images["9.8.7.6.1"]

"""Drift reads the lock's pinned images one series at a time, where it looks, proven as read."""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from pathlib import Path

import pytest

from nbia_audit.drift.diff import swap_blind, views_of
from nbia_audit.drift.pinned import PinnedImages
from nbia_audit.merkle import series_hash
from nbia_audit.models import LockedImage
from nbia_audit.store.reader import LockProofError, read_lock
from nbia_audit.store.textlock import database_path
from tests.support.lock_tools import write_pair


def _series(uid: str, count: int) -> tuple[str, str, tuple[tuple[str, str | None], ...]]:
    images = tuple(
        (f"{uid}.{i}", hashlib.md5(f"{uid}/{i}".encode()).hexdigest()) for i in range(count)
    )
    return uid, series_hash(m for _s, m in images), images


SERIES = [_series(f"1.2.3.{n}", 3 + n) for n in range(1, 6)]


def _image_objects() -> list[LockedImage]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, LockedImage)]


def test_drift_reads_images_where_it_looks_and_keeps_no_image_object(tmp_path: Path) -> None:
    # Other tests in this process may keep image objects alive (caches, fixtures): only new
    # ones count. Held here, the old ones keep their ids, so a new object cannot hide behind one.
    before = _image_objects()
    old = {id(o) for o in before}
    lock = read_lock(write_pair(tmp_path / "dataset.lock", SERIES))
    # As drift.run.read_lock shapes the lock for drift.
    views = {v.series_uid: v for v in views_of(lock.series, PinnedImages(lock.images))}
    assert not [o for o in _image_objects() if id(o) not in old]
    for uid, _hash, images in SERIES:
        seen = views[uid].images
        assert seen is not None and dict(seen) == dict(images)
        assert not swap_blind(seen)
    assert not [o for o in _image_objects() if id(o) not in old]


def test_an_edit_after_the_proof_reaches_drift_as_a_refusal(tmp_path: Path) -> None:
    path = write_pair(tmp_path / "dataset.lock", SERIES)
    pinned = PinnedImages(read_lock(path).images)
    conn = sqlite3.connect(database_path(path))
    with conn:
        conn.execute("UPDATE images SET archive_md5 = ? WHERE sop_uid = '1.2.3.2.0'", ("0" * 32,))
    conn.close()
    with pytest.raises(LockProofError):
        dict(pinned["1.2.3.2"])

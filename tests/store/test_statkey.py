"""One stat key and one racily-clean rule: the walk, the reader, fetch's records and the memo
agree on what a file's stat key is and on when it proves nothing."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom.data
from hypothesis import given
from hypothesis import strategies as st

from nbia_audit.dicom.header import DicomIdentity
from nbia_audit.store.localstate import FileRecord, LocalState
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import StatKey, racily_clean, stat_key
from nbia_audit.verify.memo import settled
from nbia_audit.verify.read import Want, examine
from nbia_audit.verify.records import Racy, Rec
from nbia_audit.verify.walk import FileEntry, walk

CT_SMALL = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
SECOND = 1_000_000_000
MOMENT = 1_772_366_410 * SECOND  # 2026-03-01T12:00:10Z


class _HeaderOnly:
    """Rules for ``examine``: read the header, hash nothing."""

    @property
    def hash_first(self) -> bool:
        return False

    def decide(self, identity: DicomIdentity | None) -> Want:
        return Want.IDENTITY

    def content_identity(self, md5: str) -> DicomIdentity | None:
        return None


def test_the_walk_the_reader_and_fetch_records_share_one_stat_key(tmp_path: Path) -> None:
    image = tmp_path / "a.dcm"
    image.write_bytes(CT_SMALL.read_bytes())
    [entry] = [e for e in walk(str(tmp_path)) if isinstance(e, FileEntry)]
    found = examine(str(image), _HeaderOnly())
    expected = stat_key(image)
    assert entry.key == expected and found.key == expected
    assert type(entry.key) is StatKey and type(found.key) is StatKey
    key = expected
    row = FileRecord("a.dcm", "1.2", "1.2.3", *key, "0" * 32, "", "t", "t", "sha256:x")
    with LocalState(tmp_path) as state:
        state.upsert([row])
        got = state.get("a.dcm")
    assert got is not None and got.stat == entry.key


def test_the_key_names_the_file_system_by_its_identity_not_its_device(tmp_path: Path) -> None:
    """statvfs's f_fsid is the same on every client of a shared file system; st_dev is one
    client's own number for the mount. (On this machine the two differ, so a key of
    st_dev fails here.) SQLite keeps signed 64-bit integers: the id is stored as such."""
    image = tmp_path / "a.dcm"
    image.write_bytes(b"x")
    fsid = os.statvfs(image).f_fsid
    signed = fsid - (1 << 64) if fsid >= 1 << 63 else fsid
    key = stat_key(image)
    assert key.fs == signed and -(1 << 63) <= key.fs < 1 << 63
    assert key[1:] == (image.stat().st_ino, 1, image.stat().st_mtime_ns, image.stat().st_ctime_ns)
    link = tmp_path / "link"
    link.symlink_to("/proc/self")  # a link's own key: the file system of its folder
    assert stat_key(link).fs == key.fs


def test_same_file_is_file_system_and_inode_only() -> None:
    key = StatKey(1, 2, 3, 4, 5)
    assert key.same_file(StatKey(1, 2, 9, 9, 9))
    assert not key.same_file(StatKey(1, 3, 3, 4, 5))
    assert not key.same_file(StatKey(7, 2, 3, 4, 5))


def test_the_racy_window_is_a_timestamp_tick() -> None:
    # Whole-second mtimes (FAT keeps two): two seconds; nanosecond mtimes: a tenth.
    assert racily_clean(MOMENT - 2 * SECOND, MOMENT)
    assert not racily_clean(MOMENT - 3 * SECOND, MOMENT)
    assert racily_clean(MOMENT - 100_000_000, MOMENT)
    assert not racily_clean(MOMENT - 100_000_001, MOMENT)
    assert racily_clean(MOMENT + 1, MOMENT)  # written after the key was taken


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(
    offset_ns=st.integers(min_value=-5 * SECOND, max_value=SECOND),
    micros=st.integers(min_value=0, max_value=999_999),
)
def test_records_and_the_stat_memo_apply_the_same_rule(offset_ns: int, micros: int) -> None:
    """A record's key and a remembered tree's key prove nothing under the same condition."""
    moment = datetime(2026, 3, 1, 12, 0, 10, micros, tzinfo=UTC)
    moment_ns = MOMENT + micros * 1000
    mtime = moment_ns + offset_ns
    key = StatKey(1, 2, 3, mtime, mtime)
    record = Rec("a.dcm", "1.2", "1.2.3", key, "0" * 32, "", _iso(moment), _iso(moment))
    entry = FileEntry("a.dcm", "/copy/a.dcm", key)
    assert Racy()(record) is racily_clean(mtime, moment_ns)
    assert settled([entry], moment) is not racily_clean(mtime, moment_ns)


def test_a_whole_second_mtime_is_racy_for_two_seconds() -> None:
    started = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    for seconds, racy in ((1, True), (2, True), (3, False)):
        mtime = MOMENT - seconds * SECOND
        entry = FileEntry("a.dcm", "/copy/a.dcm", StatKey(1, 2, 3, mtime, mtime))
        assert settled([entry], started) is not racy
        assert settled([entry], started + timedelta(seconds=60))


def test_the_state_folder_holds_every_private_file(tmp_path: Path) -> None:
    folder = StateFolder.of(tmp_path)
    with LocalState(tmp_path):
        pass
    assert folder.database.is_file() and folder.database.parent == folder.path
    assert {p.parent for p in (folder.stat_memo, folder.fetch_lock, folder.work)} == {folder.path}
    assert os.path.basename(folder.path) == ".nbia-audit"

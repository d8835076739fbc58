"""verify's local-state records and its stat-pass walk hold nothing per file in memory:
records are point and range queries, forgetting is one DELETE against the paths seen, and
the walk a stat pass digests is spilled to scratch, not listed."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec
from nbia_audit.store.localstate import LocalState
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import StatKey
from nbia_audit.verify.memo import Survey, settled, tree_stat_digest
from nbia_audit.verify.records import Row, load_records
from nbia_audit.verify.run import verify_copy
from nbia_audit.verify.walk import Blocked, FileEntry
from tests.support.verify import clone, image_files

SPEC = CorpusSpec(seed=14, collections=1, patients=2, studies=1, series=2, images=3)

MANY = 40_000
STAMP = "2026-01-01T00:00:00.000000Z"


def row(path: str, sop: str = "") -> Row:
    return (path, sop, "1.2" if sop else "", 7, 8, 9, 10, 11, "a" * 32, "b" * 32, STAMP, STAMP,
            "sha256:x")  # fmt: skip


def many_rows() -> list[Row]:
    return [row(f"s{i // 100:04d}/{i:06d}.dcm", f"1.2.{i}") for i in range(MANY)]


def traced_peak(work: object) -> int:
    """Peak bytes traced while ``work()`` runs."""
    assert callable(work)
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_records_are_queried_per_file_not_held(tmp_path: Path) -> None:
    """40 000 records as a dict were about 16 MB; one point query needs a few kB."""
    with LocalState(tmp_path) as state:
        state.upsert_rows(many_rows())
        found = []

        def look() -> None:
            records = load_records(state, str(tmp_path))
            found.append(records.get("s0123/012345.dcm"))
            found.append(records.get("s0123/nothing.dcm"))

        assert traced_peak(look) < 1_000_000
    rec = found[0]
    assert rec is not None and rec.sop == "1.2.12345" and rec.key == StatKey(7, 8, 9, 10, 11)
    assert found[1] is None


def test_read_only_records_are_queried_too(tmp_path: Path) -> None:
    with LocalState(tmp_path) as state:
        state.upsert_rows(many_rows())
    found = []

    def look() -> None:
        records = load_records(None, str(tmp_path))  # the state could not be opened for writing
        found.append(records.get("s0007/000700.dcm"))
        found.append(len(records))
        records.close()

    assert traced_peak(look) < 1_000_000
    assert found[0] is not None and found[0].sop == "1.2.700" and found[1] == MANY


def test_images_below_a_folder_are_a_range_of_paths(tmp_path: Path) -> None:
    with LocalState(tmp_path) as state:
        state.upsert_rows([
            row("d/x.dcm", "1"), row("d/sub/y.dcm", "2"), row("d/notes.txt"),  # below d/
            row("d.dcm", "3"), row("d0/z.dcm", "4"), row("dd/w.dcm", "5"), row("c/v.dcm", "6"),
        ])  # fmt: skip
        records = load_records(state, str(tmp_path))
        assert sorted(records.images_below("d")) == [("1", "1.2"), ("2", "1.2")]
        assert list(records.images_below("d/sub")) == [("2", "1.2")]
        assert list(records.images_below("e")) == []


def test_forgetting_deletes_exactly_the_paths_not_seen(tmp_path: Path) -> None:
    with LocalState(tmp_path) as state:
        state.upsert_rows(many_rows())
        records = load_records(state, str(tmp_path))
        kept = [f"s{i // 100:04d}/{i:06d}.dcm" for i in range(0, MANY, 3)]
        for path in kept:
            records.add(path)
        records.add("new/not-recorded.dcm")
        records.add("caf\udce9.dcm")  # a name that is not UTF-8: never recorded, no error
        assert records.forget_unseen() == MANY - len(kept)
        left = [r[0] for r in state.db.execute("SELECT path FROM files ORDER BY path")]
    assert left == sorted(kept)


def entries(count: int) -> Iterator[FileEntry | Blocked]:
    for i in range(count):
        if i % 1000 == 999:
            yield Blocked(f"d/{i:06d}", "a FIFO (named pipe)", False)
        else:
            key = StatKey(1, i, 100, 1_000_000_000 + i, 1_000_000_000 + i)
            yield FileEntry(f"d/{i:06d}.dcm", f"/copy/d/{i:06d}.dcm", key)


def test_the_stat_pass_walk_is_spilled_not_listed() -> None:
    """The stat memo's digest and the run both see the walk, which is never a list."""
    started = datetime(2026, 3, 1, tzinfo=UTC)
    surveys: list[Survey] = []
    assert traced_peak(lambda: surveys.append(Survey(entries(MANY), started))) < 1_000_000
    survey = surveys[0]
    assert survey.tree == tree_stat_digest(entries(MANY))
    assert survey.settled is settled(entries(MANY), started) is True
    replayed = iter(survey.replay())
    for expected, got in zip(entries(MANY), replayed, strict=True):
        assert got == expected
    assert not survey._folder.exists()  # the spill is gone once replayed


def test_a_racy_entry_unsettles_the_survey() -> None:
    started = datetime(2026, 3, 1, tzinfo=UTC)
    now_ns = int(started.timestamp()) * 1_000_000_000
    racy = FileEntry("a.dcm", "/copy/a.dcm", StatKey(1, 2, 3, now_ns, now_ns))
    survey = Survey(iter([racy]), started)
    survey.discard()
    assert survey.settled is False and not survey._folder.exists()


@pytest.fixture
def copy(pristine: Path, lock: Path, tmp_path: Path) -> Path:
    root = clone(pristine, tmp_path / "copy")
    assert verify_copy(lock, root).clean  # records every file
    return root


def edit_records(root: Path, sql: str) -> int:
    with sqlite3.connect(StateFolder.of(root).database) as db:
        return db.execute(sql).rowcount


def test_a_record_made_on_another_client_is_trusted(copy: Path, lock: Path) -> None:
    """Another NFS or Lustre client numbers the mount's device differently; the file
    system's identity, inode, size and times are the same, so its records hold here."""
    files = len(list(image_files(copy)))
    edit_records(copy, "UPDATE files SET device = 4242")  # that client's st_dev, say
    report = verify_copy(lock, copy, level="stat")
    assert report.clean
    assert report.facts["unchanged_stat"] == files and report.facts["hashed_md5"] == 0


def test_a_record_whose_ctime_differs_is_not_trusted(copy: Path, lock: Path) -> None:
    """ctime cannot be set from user space: a tree copied with its state database (times
    preserved, inodes even matched) still differs there, and is hashed."""
    one = image_files(copy).__next__().relative_to(copy).as_posix()
    assert edit_records(copy, f"UPDATE files SET ctime_ns = ctime_ns - 1 WHERE path = '{one}'")
    report = verify_copy(lock, copy, level="stat")
    assert report.clean and report.facts["hashed_md5"] == 1


def test_a_record_of_another_file_system_is_not_trusted(copy: Path, lock: Path) -> None:
    files = len(list(image_files(copy)))
    edit_records(copy, "UPDATE files SET fs_id = fs_id + 1")
    report = verify_copy(lock, copy, level="stat")
    assert report.clean and report.facts["hashed_md5"] == files


def test_records_of_format_1_are_hashed_once_then_trusted(copy: Path, lock: Path) -> None:
    """A state database written before the file system's identity was recorded (fs_id
    NULL after the migration): each file is hashed once more, then recorded anew."""
    files = len(list(image_files(copy)))
    edit_records(copy, "UPDATE files SET fs_id = NULL")
    first = verify_copy(lock, copy, level="stat")
    assert first.clean and first.facts["hashed_md5"] == files
    StateFolder.of(copy).stat_memo.unlink()  # the records, not the memo of that pass
    second = verify_copy(lock, copy, level="stat")
    assert second.clean and second.facts["hashed_md5"] == 0


def test_a_read_only_state_of_format_1_is_read_never_trusted(tmp_path: Path) -> None:
    """A copy whose state an older release wrote, that this user cannot migrate: its records
    still name the images (for attribution), and their stat keys are never trusted."""
    with LocalState(tmp_path) as state:
        state.upsert_rows([row("a.dcm", "1.2.3")])
    with sqlite3.connect(StateFolder.of(tmp_path).database) as db:  # back to format 1
        db.execute("ALTER TABLE files DROP COLUMN fs_id")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm002_fs_identity'")
    records = load_records(None, str(tmp_path))
    rec = records.get("a.dcm")
    records.close()
    assert rec is not None and rec.sop == "1.2.3" and rec.key.fs == -1

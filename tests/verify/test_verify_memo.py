"""The stat memo: an unchanged tree costs one walk; any change, or another level, voids it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.verify.run import verify_copy
from tests.support.verify import (
    clone,
    flip_bit_keep_mtime,
    image_files,
    sop_of,
)

SPEC = CorpusSpec(seed=8, collections=1, patients=2, studies=1, series=2, images=3)


@pytest.fixture
def copy(pristine: Path, lock: Path, tmp_path: Path) -> Path:
    root = clone(pristine, tmp_path / "copy")
    assert verify_copy(lock, root).clean
    return root


def memo_file(root: Path) -> Path:
    return StateFolder.of(root).stat_memo


def test_second_stat_pass_over_an_unchanged_tree_uses_the_memo(copy: Path, lock: Path) -> None:
    first = verify_copy(lock, copy, level="stat")
    assert first.clean and "memo" not in first.facts and memo_file(copy).exists()
    second = verify_copy(lock, copy, level="stat")
    assert second.clean and "nothing else was read" in str(second.facts["memo"])
    assert second.series == first.series
    assert second.finished_at >= first.finished_at


def test_any_change_to_the_tree_voids_the_memo(copy: Path, lock: Path) -> None:
    assert verify_copy(lock, copy, level="stat").clean
    victim = next(image_files(copy))
    flip_bit_keep_mtime(victim)  # ctime moves, so the stat key does
    report = verify_copy(lock, copy, level="stat")
    assert "memo" not in report.facts
    assert {(f.kind, f.sop_uid) for f in report.findings} == {("modified", sop_of(victim))}
    assert not memo_file(copy).exists()  # a report with findings is never remembered


def test_new_file_voids_the_memo(copy: Path, lock: Path) -> None:
    assert verify_copy(lock, copy, level="stat").clean
    (copy / "notes.bin").write_bytes(os.urandom(64))
    report = verify_copy(lock, copy, level="stat")
    assert "memo" not in report.facts and not report.clean


def test_other_levels_forget_the_memo(copy: Path, lock: Path) -> None:
    assert verify_copy(lock, copy, level="stat").clean
    assert memo_file(copy).exists()
    assert verify_copy(lock, copy, level="quick").clean
    assert not memo_file(copy).exists()


def test_a_changed_lock_database_voids_the_memo(copy: Path, lock: Path) -> None:
    assert verify_copy(lock, copy, level="stat").clean
    db = lock.with_name(lock.name + ".db")
    os.utime(db)  # a rewritten lock database (e.g. a fetch filling in images)
    assert "memo" not in verify_copy(lock, copy, level="stat").facts


def test_a_tree_written_just_now_is_not_remembered(copy: Path, lock: Path) -> None:
    victim = next(image_files(copy))
    victim.write_bytes(victim.read_bytes())  # same bytes, fresh mtime
    assert verify_copy(lock, copy).clean  # a full pass proves it again
    # The stat pass starts within one timestamp tick of the write, however slow the machine.
    written = datetime.fromtimestamp(victim.stat().st_mtime_ns / 1e9, UTC)
    just_after = written + timedelta(milliseconds=50)
    assert verify_copy(lock, copy, level="stat", now=lambda: just_after).clean
    assert not memo_file(copy).exists()  # within a timestamp tick: proves nothing yet

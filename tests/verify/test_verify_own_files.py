"""What verify reads, and what it passes over, when the copy holds more than images.

- The lock pair and its spec inside the copy are passed over only while they are not DICOM;
  any other name a lock write uses (``.new``, ``.db.old``, a journal) is judged like any file.
- Every file is read at most to its stat size, and a byte more: a link to an endless file
  (``/proc/self/pagemap``) or a file holding more than stat said is reported, never read
  without end.

A real lock and fetched copy from the emulator; the real CLI in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec
from tests.support.lock_tools import lock_and_fetch

SPEC = CorpusSpec(seed=41, collections=1, patients=1, studies=1, series=2, images=2)


@pytest.fixture
def copy_with_lock(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A fetched copy whose lock pair and spec live inside it, as a repository keeps them."""
    data = tmp_path / "data"
    data.mkdir()
    yield from lock_and_fetch(SPEC, data, data)


def verify(lock: Path, data: Path, *extra: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "nbia_audit", "verify", str(lock), str(data), "--format", "json",
         *extra],
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard, not a measurement
        cwd="/",
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def kinds(report: dict[str, object]) -> dict[str, str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {path: f["kind"] for f in findings for path in f.get("paths") or [f.get("path")]}


def an_image(data: Path) -> Path:
    return sorted(data.rglob("*.dcm"))[0]


def test_the_lock_pair_and_spec_inside_the_copy_are_passed_over(
    copy_with_lock: tuple[Path, Path],
) -> None:
    lock, data = copy_with_lock
    code, report = verify(lock, data)
    assert code == 0 and report["findings"] == []


@pytest.mark.parametrize(
    "name",
    ["dataset.lock.new", "dataset.lock.db.old", "dataset.lock.db.new", "dataset.lock.db-journal"],
)
def test_names_a_lock_write_leaves_never_hide_a_file(
    copy_with_lock: tuple[Path, Path], name: str
) -> None:
    """Reading the lock tidies what an interrupted lock write left (lockfile.recover_
    interrupted); whatever is still there afterwards is judged like any file."""
    lock, data = copy_with_lock
    shutil.copy2(an_image(data), data / name)
    code, report = verify(lock, data)
    if (data / name).exists():
        assert code == 1 and kinds(report).get(name) == "duplicate", report["findings"]
    else:
        assert code == 0 and report["findings"] == []


@pytest.mark.parametrize("name", ["dataset.yaml", "dataset.yml"])
def test_an_image_under_a_lock_name_is_a_duplicate(
    copy_with_lock: tuple[Path, Path], name: str, tmp_path: Path
) -> None:
    lock, data = copy_with_lock
    target = data / name
    if name == "dataset.yaml":  # the spec itself overwritten: keep the lock's own copy aside
        shutil.copy2(target, tmp_path / "spec.yaml")
    shutil.copy2(an_image(data), target)
    code, report = verify(lock, data)
    assert code == 1 and kinds(report).get(name) == "duplicate", report["findings"]


def test_a_link_to_an_endless_file_is_reported_not_read_forever(
    copy_with_lock: tuple[Path, Path],
) -> None:
    lock, data = copy_with_lock
    endless = Path("/proc/self/pagemap")
    if not endless.exists():  # pragma: no cover - not Linux
        pytest.skip("needs /proc/self/pagemap")
    (data / "notes.txt").symlink_to(endless)
    for level in ("full", "quick"):
        code, report = verify(lock, data, "--level", level)
        assert code == 1, report
        assert kinds(report) == {"notes.txt": "unreadable"}, report["findings"]


def test_a_file_holding_more_than_its_stat_size_is_never_clean(
    copy_with_lock: tuple[Path, Path],
) -> None:
    """/proc/self/status: a regular file of stat size 0 that holds text."""
    lock, data = copy_with_lock
    image = an_image(data)
    os.remove(image)
    image.symlink_to("/proc/self/status")
    code, report = verify(lock, data)
    assert code == 1 and report["clean"] is False
    found = kinds(report)
    assert found.get(image.relative_to(data).as_posix()) == "unreadable", report["findings"]


def test_a_state_database_with_an_endless_view_is_not_read(
    copy_with_lock: tuple[Path, Path],
) -> None:
    """The state database travels with the copy: one we did not shape is not used (every
    file is hashed instead), never read without end."""
    import sqlite3

    lock, data = copy_with_lock
    assert verify(lock, data)[0] == 0  # writes the state database
    conn = sqlite3.connect(data / ".nbia-audit" / "state.db")
    with conn:
        conn.execute("ALTER TABLE files RENAME TO files_real")
        conn.execute(
            "CREATE VIEW files AS WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1"
            " FROM c) SELECT f.* FROM files_real f, c"
        )
    conn.close()
    for level in ("full", "quick", "stat"):
        code, report = verify(lock, data, "--level", level)
        assert code == 0 and report["findings"] == [], report
        assert "not an nbia-audit state database" in json.dumps(report["facts"])

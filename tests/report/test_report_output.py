"""Where a report goes: never over the lock, never a device replaced by a file, and a report
that cannot be delivered is said in one line with the exit code of the one rule.

The real CLI in a child process, against a real lock and copy from the emulator.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec
from tests.support.lock_tools import lock_and_fetch

SPEC = CorpusSpec(seed=43, collections=1, patients=1, studies=1, series=2, images=2)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("pair")
    yield from lock_and_fetch(SPEC, root, root / "data")


def run(args: list[str], stdout: int | None = subprocess.PIPE) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "nbia_audit", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,  # a hang guard
        cwd="/",
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def verbs(lock: Path, data: Path) -> list[list[str]]:
    return [
        ["verify", str(lock), str(data), "-q"],
        ["report", str(lock), "--verify", str(data)],
        ["drift", str(lock), "-q"],
    ]


@pytest.mark.parametrize("name", ["dataset.lock", "dataset.lock.db", "dataset.yaml"])
def test_a_report_is_never_written_over_the_lock(pair: tuple[Path, Path], name: str) -> None:
    lock, data = pair
    target = lock.parent / name
    before = target.read_bytes()
    for args in verbs(lock, data):
        code, stderr = run([*args, "--output", str(target)])
        assert code == 2 and "part of the lock being read" in stderr, stderr
        assert target.read_bytes() == before
    link = lock.parent / "innocent.json"  # nor through a link to it
    link.symlink_to(target)
    try:
        code, _ = run([*verbs(lock, data)[0], "--output", str(link)])
        assert code == 2 and target.read_bytes() == before
    finally:
        link.unlink()


def _device(path: Path, minor: int) -> Path:
    """A private character device (1, minor): 3 is /dev/null, 7 is /dev/full."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


def test_output_onto_a_device_writes_into_it_and_keeps_it(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    lock, data = pair
    null = _device(tmp_path / "null", 3)
    for args in verbs(lock, data):
        code, stderr = run([*args, "--output", str(null)])
        assert code == 0, stderr
        assert stat.S_ISCHR(null.lstat().st_mode), "the device was replaced by a file"


def test_a_link_is_followed_and_kept(pair: tuple[Path, Path], tmp_path: Path) -> None:
    lock, data = pair
    real = tmp_path / "reports" / "verify.txt"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.txt"
    link.symlink_to(real)
    code, _ = run([*verbs(lock, data)[0], "--output", str(link)])
    assert code == 0 and link.is_symlink() and "CLEAN" in real.read_text()


def test_a_full_standard_output_is_one_line_and_exit_3(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    lock, data = pair
    full = _device(tmp_path / "full", 7)
    for args in verbs(lock, data):
        with open(full, "w") as sink:
            code, stderr = run(args, stdout=sink.fileno())
        assert code == 3, stderr  # clean, but the result was never delivered
        assert stderr.count("\n") == 1 and "cannot write the report to standard output" in stderr


def test_a_closed_pipe_is_exit_3_never_the_findings_code(pair: tuple[Path, Path]) -> None:
    lock, data = pair
    for args in verbs(lock, data):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before anything is written
        try:
            code, stderr = run(args, stdout=write_end)
        finally:
            os.close(write_end)
        assert code == 3, stderr


def test_findings_stand_when_the_report_cannot_be_written(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    lock, data = pair
    stray = data / "stray.txt"
    stray.write_text("not an image")
    try:
        code, stderr = run(
            ["verify", str(lock), str(data), "--output", str(tmp_path / "no" / "r.json")]
        )
    finally:
        stray.unlink()
    assert code == 1 and "cannot write the report" in stderr, stderr

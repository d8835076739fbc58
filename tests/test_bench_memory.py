"""The memory benchmark (bench/bench_memory.py) runs end to end and measures each child alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_memory.py"

# Every step issue 14 measures, and the exit code that says it ran to the end (verify of an
# empty folder finds everything missing: 1; of the files that match the lock: clean, 0).
STEPS = {
    "read_lock(load_images=False)": "0",
    "read_lock(load_images=True)": "0",
    "verify stat, empty folder": "1",
    "verify quick, empty folder": "1",
    "verify stat, matching files, 1st pass": "0",
    "verify stat, matching files, 2nd pass": "0",
    "verify quick, matching files, 1st pass": "0",
    "verify quick, matching files, 2nd pass": "0",
    "report (supplement, md)": "0",
}


@pytest.mark.slow  # about 30 child interpreters: 30 s alone, 90 s on a loaded 2-core machine
def test_run_prints_a_row_per_step_the_sizes_and_the_flatness_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--images", "400", "--images", "800", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| ")
    ]
    # 400 images are 3 whole series of 126.
    measured = {cells[0]: cells for cells in rows if len(cells) == 9 and cells[1] == "378"}
    assert set(measured) == set(STEPS), done.stdout
    for label, cells in measured.items():
        assert cells[2] == STEPS[label], cells
        assert float(cells[3]) > 0 and float(cells[4]) > 0, cells  # wall, CPU
        assert float(cells[5]) > 0 and cells[6] and cells[7], cells  # peak, growth, per 100 k
    sizes = [cells for cells in rows if len(cells) == 6 and cells[0] == "378"]
    assert len(sizes) == 1 and sizes[0][1] == "3" and int(sizes[0][3]) > 0, done.stdout
    # The copy of 378 files matched the lock (every verify over it exited 0 above), and the
    # time to write them is said.
    assert "written by a child at 378 images: lock pair in" in done.stdout
    assert ", 378 files in " in done.stdout
    # Issue 14's check, one line per verify step, 756 images against 378.
    checks = [line for line in done.stdout.splitlines() if line.startswith(("PASS: ", "FAIL: "))]
    assert sorted(line.split(": ")[1] for line in checks) == sorted(
        label for label in STEPS if label.startswith("verify")
    ), done.stdout
    assert all(" at 756 images " in line and " at 378 " in line for line in checks), checks
    assert "issue 14 memory check (every verify step measured): " in done.stdout
    assert "  copy present (matching files): " in done.stdout
    assert "  everything missing (one finding per image): " in done.stdout
    assert "Traceback" not in done.stderr


def test_each_child_is_measured_alone_not_by_the_largest_before_it(tmp_path: Path) -> None:
    """A small child measured after a large one reports its own peak (RUSAGE_CHILDREN would
    report the largest child so far).

    Measured from a fresh, small parent: a child starts with its parent's high-water mark, and
    pytest's own grows over a full run (the benchmark checks its own parent the same way).
    """
    script = f"""
import sys
sys.path.insert(0, {str(BENCH.parent)!r})
from pathlib import Path
import bench_memory as bench
env = bench.child_environment(Path({str(tmp_path)!r}))
touch = "b = bytearray(200_000_000); b[::4096] = b'x' * len(b[::4096])"
big = bench.measure([sys.executable, "-c", touch], env)
small = bench.measure([sys.executable, "-c", "pass"], env)
print(big.exit_code, small.exit_code, big.peak_mb, small.peak_mb)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    big_code, small_code, big_mb, small_mb = done.stdout.split()
    assert big_code == "0" and small_code == "0"
    assert float(big_mb) > 200
    assert float(small_mb) < 100, done.stdout


def test_kept_files_are_written_once_and_reused(tmp_path: Path) -> None:
    """A million files take a while to write: --files-dir keeps them for the next run, which
    reuses them only when they were written completely for that size."""
    kept = tmp_path / "kept"
    command = [sys.executable, str(BENCH), "--images", "300", "--files-dir", str(kept),
               "--write-files-only", "--dir", str(tmp_path)]  # fmt: skip
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
            for _ in range(2)]  # fmt: skip
    for done in runs:
        assert done.returncode == 0, done.stderr
    assert "252 files written in" in runs[0].stdout
    assert "252 files reused in" in runs[1].stdout
    assert len(list((kept / "n300").rglob("*.dcm"))) == 252
    # A folder left half written (no completion mark) is written again, not trusted.
    (kept / "n300.complete").unlink()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "252 files written in" in again.stdout, again.stderr

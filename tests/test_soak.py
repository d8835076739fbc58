"""The quick soak campaign (bench/soak.py --quick) runs in CI and loses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


@pytest.mark.slow  # about 20 s alone, 45 s on a loaded 2-core machine
def test_quick_soak_kills_and_faults_lose_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "`" in line]
    # kill-fetch, kill-lock and one fault rate, each with its count and zero lost.
    assert len(rows) == 3, done.stdout
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert int(cells[1]) > 0 and cells[2] == "0", row
    assert "Traceback" not in done.stderr


def test_the_soak_checks_see_a_wrong_file_and_a_broken_lock_pair(tmp_path: Path) -> None:
    """The campaign's "lost 0" means something only if its checks can see a loss."""
    sys.path.insert(0, str(SOAK.parent))
    try:
        import soak
    finally:
        sys.path.remove(str(SOAK.parent))
    dest = tmp_path / "data"
    (dest / "a").mkdir(parents=True)
    (dest / "a" / "1.dcm").write_bytes(b"locked bytes")
    (dest / ".nbia-audit").mkdir()
    (dest / ".nbia-audit" / "state.db").write_bytes(b"private, not judged")
    expected = {"a/1.dcm": b"locked bytes"}
    assert soak.unverified_in_place(dest, expected) == 0
    (dest / "a" / "2.dcm").write_bytes(b"a stray")
    (dest / "a" / "1.dcm").write_bytes(b"locked bytez")
    assert soak.unverified_in_place(dest, expected) == 2
    lock = tmp_path / "dataset.lock"
    assert soak.pair_consistent(lock)  # no pair at all is consistent
    lock.write_text("not a lock", encoding="utf-8")
    assert not soak.pair_consistent(lock)

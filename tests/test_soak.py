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

"""The shards benchmark (bench/bench_shards.py) runs end to end on a small corpus: every shard
and merge exits 0 with one process's verdict, and the ratios and NLST on paper are printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_shards.py"


@pytest.mark.slow  # builds and locks 20 files, then about 12 verify processes
def test_small_run_measures_shards_and_merge_against_one_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--dir", str(tmp_path), "--collections", "1",
         "--patients", "1", "--studies", "1", "--series", "4", "--images", "5",
         "--image-bytes", "4096", "--shards", "2", "--shards", "3"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    # Exit 0 only when every shard and merge exited 0 and each merge's verdict was one
    # process's (and the shard options exist at all).
    assert done.returncode == 0, done.stdout + done.stderr
    table = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| ")
    ]
    rows = {cells[0]: cells for cells in table}
    for count in (2, 3):
        for how in ("one after another", "2 at a time"):
            cells = rows[f"{count} shards, {how}, + merge"]
            assert cells[1] == str(count + 1), cells  # N shard processes and the merge
            assert float(cells[2]) > 0 and float(cells[7]) > 0, cells  # CPU, merge wall
    checks = [line for line in done.stdout.splitlines() if line.startswith(("PASS: ", "FAIL: "))]
    assert len(checks) == 8, done.stdout  # work and merge share, for 2 counts x 2 ways
    # NLST on paper, with the merge measured in this run.
    assert "on paper, NLST (203,087 series, 21.08 M images, 11.1 TB" in done.stdout
    paper = [cells for cells in table if cells[0] in ("1", "8", "64")]
    assert len(paper) == 6 and all(cells[5] != "not measured" for cells in paper), done.stdout

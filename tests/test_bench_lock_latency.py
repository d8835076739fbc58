"""The series-only lock benchmark (bench/bench_lock_latency.py) runs end to end and reports
requests/s against the ideal of workers / latency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_lock_latency.py"


@pytest.mark.slow  # an emulator and two lock processes: about 20 s alone
def test_smoke_run_locks_every_series_and_compares_with_the_ideal() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--collections", "1", "--patients", "2", "--studies", "1",
         "--series", "5", "--latency", "0.01", "--workers", "4"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lock --series-only --workers 4: 10 series served (10 generated)" in done.stdout
    rows = {line[:38].strip(): line[38:].split() for line in done.stdout.splitlines()[2:4]}
    # exit, series, requests, wall, req/s[, ideal req/s, x ideal], peak RSS
    baseline, loaded = rows["no latency injected (baseline)"], rows["10 ms per request"]
    assert baseline[:2] == ["0", "10"] and loaded[:2] == ["0", "10"], done.stdout
    # Both locks asked the same: one hash per series, plus the spec's resolution and nodes.
    assert int(loaded[2]) == int(baseline[2]) >= 10, done.stdout
    assert loaded[5] == "400" and 0 <= float(loaded[6]) <= 1.0, done.stdout  # 4 / 10 ms
    assert float(loaded[7]) > 0, done.stdout  # the lock process's own peak RSS
    assert "against the ideal" in done.stdout

"""`nbia-audit fetch` on the command line: exit codes, plain lines, the summary, the bar."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode
from nbia_audit.cli.fetch import FetchDisplay
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.fetch.series import SeriesOutcome
from nbia_audit.store.textlock import database_path
from tests.support.cli import run_cli
from tests.support.fetch import classic_paths, make_lock, tree

SPEC = CorpusSpec(seed=13, collections=1, patients=2, studies=1, series=2, images=2)


def run(*args: str) -> tuple[int, str, str]:
    result = run_cli("fetch", *args)
    return result.exit_code, result.stdout, result.stderr


def test_fetch_exit_0_with_plain_lines_and_summary(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    code, out, err = run(str(lock), "--dest", str(dest), "-q")
    assert code == ExitCode.CLEAN, err
    assert out.count("fetched  ") == 4 and "(2 images, " in out
    assert "Fetched 4 series (8 images," in out and "0 already in place" in out
    assert "0 failed." in out and tree(dest) == classic_paths(emu)
    code, out, _ = run(str(lock), "--dest", str(dest), "--quiet", "--layout", "classic")
    assert code == ExitCode.CLEAN and "Fetched 0 series" in out and "4 already in place" in out


def test_fetch_exit_1_names_the_series_it_could_not_verify(tmp_path: Path, emu: Emulator) -> None:
    victim = emu.corpus.series[1]
    sop = emu.corpus.images_of(victim.series_uid)[0].sop_uid
    emu.set_stored_md5(sop, "f" * 32)
    lock = make_lock(tmp_path / "lock", emu)
    code, out, err = run(str(lock), "--dest", str(tmp_path / "d"), "-q", "--attempts", "1")
    assert code == ExitCode.FINDINGS
    assert "3 series" in out and "1 failed." in out
    assert f"FAILED   {victim.series_uid}: image {sop}" in err
    assert "Could not verify 1 series" in err and f"  {victim.series_uid} (1 attempt):" in err
    others = {s.series_uid for s in emu.corpus.series} - {victim.series_uid}
    assert tree(tmp_path / "d") == classic_paths(emu, others)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "{nope}"], "--layout: unknown field {nope}"),
        (["--series", "9.9.9"], "--series: not in the lock: 9.9.9"),
        (["--workers", "0"], "Invalid value for '--workers'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, emu: Emulator, args: list[str], message: str) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    code, _, err = run(str(lock), "--dest", str(tmp_path / "d"), *args)
    assert code == ExitCode.USAGE and message in err and "Traceback" not in err


def test_environment_errors_exit_3(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    database_path(lock).unlink()
    code, _, err = run(str(lock), "--dest", str(tmp_path / "d"))
    assert code == ExitCode.ENVIRONMENT and "lock database not found" in err
    code, _, err = run(str(tmp_path / "missing.lock"), "--dest", str(tmp_path / "d"))
    assert code == ExitCode.ENVIRONMENT and "lock not found" in err


def test_the_progress_bar_shows_series_bytes_rate_and_eta(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = FetchDisplay(live=True)
    display.progress("check", 3, 3)
    display.progress("series", 1, 4)
    display.progress("bytes", 0, 4_000_000)
    display._drawn = 0.0
    display._window.appendleft((display._window[0][0] - 2.0, -2_000_000))
    display.progress("bytes", 2_000_000, 4_000_000)
    display.series(SeriesOutcome("1.2.3", "C", "P", "failed", reasons=("it broke",)))
    display.close()
    err = capsys.readouterr().err
    assert "checking what is in place: 3/3" in err
    assert "[############------------] 1/4 series  2.0 MB/4.0 MB  2.0 MB/s  ETA 0:01\x1b[K" in err
    assert err.endswith("\x1b[K\r\x1b[KFAILED   1.2.3: it broke\n")

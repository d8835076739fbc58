"""``nbia-audit emulator`` commands (called through a tiny local entry point)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from nbia_audit.emulator import Emulator
from tests.support.cli import run_cli

ENTRY = "from nbia_audit.cli.emulator import emulator; emulator()"


@contextmanager
def served(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``emulator serve ARGS`` as a child process, with the base URL it prints first."""
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "serve", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_serve_prints_the_base_url_first_and_stops_on_sigterm(tmp_path: Path) -> None:
    with served("--seed", "3", "--series", "1", "--images", "2") as (process, url):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/nbia-api/services")
        assert requests.get(f"{url}/v4/getCollectionValues", timeout=60).json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_serve_a_folder_corpus(tmp_path: Path) -> None:
    built = run_cli(
        "emulator", "build", "--out", str(tmp_path), "--collections", "1", "--images", "2"
    )
    assert built.exit_code == 0, built.output
    assert "wrote 8 DICOM files" in built.output
    assert len(list(tmp_path.rglob("*.dcm"))) == 8
    with served("--corpus", str(tmp_path), "--user", "bob:pw") as (process, url):
        series = requests.get(f"{url}/v4/getSeries", timeout=60).json()
        assert len(series) == 4 and {s["Collection"] for s in series} == {"EMU-LUNG"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0


def test_mutate_and_fault_a_running_emulator(emulator: Emulator) -> None:
    uid = emulator.corpus.series[0].series_uid
    result = run_cli(
        "emulator", "mutate", emulator.base_url, "hide_series", "--arg", f"series_uid={uid}"
    )
    assert result.exit_code == 0, result.output
    assert emulator.corpus.series_by_uid(uid).visibility == "0"  # type: ignore[union-attr]
    added = run_cli(
        "emulator",
        "mutate",
        emulator.base_url,
        "add_series",
        "--arg",
        "collection=EMU-LUNG",
        "--arg",
        "images=2",
    )
    assert added.exit_code == 0 and emulator.corpus.series_by_uid(added.output.strip())
    bad = run_cli("emulator", "mutate", emulator.base_url, "explode")
    assert bad.exit_code == 2 and "'explode' is not one of" in bad.output
    fault = run_cli(
        "emulator",
        "fault",
        emulator.base_url,
        "status",
        "--status",
        "502",
        "--endpoint",
        "getSeries",
        "--times",
        "1",
    )
    assert fault.exit_code == 0 and "1 fault(s) active" in fault.output
    assert requests.get(f"{emulator.base_url}/v4/getSeries").status_code == 502
    run_cli("emulator", "fault", emulator.base_url, "latency", "--delay", "0.01")
    cleared = run_cli("emulator", "fault", emulator.base_url, "clear")
    assert cleared.exit_code == 0 and emulator.faults == ()


def test_bad_arguments() -> None:
    assert run_cli("emulator", "mutate", "http://x", "hide_series", "--arg", "nokey").exit_code == 2
    assert run_cli("emulator", "serve", "--user", "nopassword").exit_code == 2
    assert run_cli("emulator", "fault", "http://x", "meteor").exit_code == 2


def test_mutate_runs_the_nightly_job_and_rejects_bad_arguments_with_exit_2(
    emulator: Emulator,
) -> None:
    series = emulator.corpus.series[0]
    emulator.replace_image(emulator.corpus.images_of(series.series_uid)[0].sop_uid)
    done = run_cli("emulator", "mutate", emulator.base_url, "run_nightly_job")
    assert done.exit_code == 0 and series.collection in done.output  # its hash was rewritten
    wrong = run_cli("emulator", "mutate", emulator.base_url, "hide_series")
    assert wrong.exit_code == 2 and "hide_series takes: series_uid" in wrong.output
    helped = run_cli("emulator", "mutate", "--help")
    assert "set_release_date: target, when" in helped.output

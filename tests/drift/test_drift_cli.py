"""`nbia-audit drift` on the command line: exit codes 0/1/2/3, formats, --output, requests.

The command builds its client with the default retry policy (seconds of backoff), so the
failures injected here are the ones NBIA does not retry (HTTP 400); 5xx and timeouts are
tested on the library with a fast retry policy (test_drift_faults.py).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nbia_audit.emulator import Emulator, Fault
from tests.support.cli import run_cli
from tests.support.drift import (
    WHOLE,
    Place,
    make_lock,
)


@pytest.fixture
def lock(emu: Emulator, tmp_path: Path) -> Path:
    return make_lock(emu, tmp_path / "work")


def run(*args: str) -> tuple[int, str, str]:
    result = run_cli("drift", *args)
    return result.exit_code, result.stdout, result.stderr


def test_no_drift_exits_0_and_prints_the_requests(lock: Path) -> None:
    code, out, _ = run(str(lock), "-q")
    assert code == 0, out
    assert "CLEAN" in out and "requests: 8" in out


def test_drift_exits_1_with_json_on_stdout(lock: Path, emu: Emulator) -> None:
    series = Place(emu).series_in(WHOLE)[0].series_uid
    emu.remove_series(series)
    code, out, err = run(str(lock), "--format", "json", "--fast")
    assert code == 1
    document = json.loads(out)
    assert document["command"] == "drift" and document["complete"] is True
    assert document["counts"] == {"series-removed": 1}
    assert document["findings"][0]["series_uid"] == series
    assert "staleness_window" in document["facts"]
    assert "drift: 1 finding(s)" in err and "requests" in err


def test_output_is_written_atomically_as_junit(lock: Path, emu: Emulator, tmp_path: Path) -> None:
    at = Place(emu)
    emu.replace_image(at.first_image(at.series_in(WHOLE)[1].series_uid)[0])
    report = tmp_path / "out" / "drift.xml"
    report.parent.mkdir()
    code, out, err = run(str(lock), "--format", "junit", "--output", str(report), "--workers", "2")
    assert code == 1 and out == ""
    root = ET.fromstring(report.read_text(encoding="utf-8"))
    assert root.get("failures") == "1" and root.get("tests") == "16"
    assert [p.name for p in report.parent.iterdir()] == ["drift.xml"]  # no temporary left
    assert f"report written to {report}" in err


def test_unreachable_archive_exits_3(lock: Path, emu: Emulator) -> None:
    emu.add_fault(Fault("status", status=400))
    code, _, err = run(str(lock), "-q")
    assert code == 3
    assert "nbia-audit: error:" in err and "400" in err and "Traceback" not in err


def test_incomplete_check_without_findings_exits_3_never_0(lock: Path, emu: Emulator) -> None:
    emu.add_fault(Fault("status", status=400, endpoint="getMD5Hierarchy"))
    code, out, _ = run(str(lock), "-q")
    assert code == 3
    assert "INCOMPLETE" in out and "CLEAN" not in out


def test_findings_with_an_incomplete_check_exit_1_and_say_incomplete(
    lock: Path, emu: Emulator
) -> None:
    emu.remove_series(Place(emu).series_in(WHOLE)[0].series_uid)
    emu.add_fault(Fault("status", status=400, endpoint="getSOPInstanceUIDs"))
    emu.add_image(Place(emu).series_in(WHOLE)[2].series_uid)
    code, out, _ = run(str(lock), "-q")
    assert code == 1  # true findings (not necessarily all): the one rule, any finding is 1
    assert "INCOMPLETE" in out and "series-removed: 1" in out


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "missing.lock"))
    assert code == 2 and "does not exist" in err
    code, _, _ = run(str(tmp_path), "--format", "yaml")
    assert code == 2


def test_unreadable_lock_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "dataset.lock"
    bad.write_text("not a lock", encoding="utf-8")
    code, _, err = run(str(bad))
    assert code == 3 and str(bad) in err and "Traceback" not in err

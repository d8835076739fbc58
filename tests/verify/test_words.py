"""Words match proof (issue 10 #3), in every output: text, JSON, JUnit, and the Markdown,
HTML and JSON supplements. Only a pass that hashed every file with MD5 says "verified"; a
stat pass says "unchanged since verified by content on DATE"; a quick pass says what its
fingerprint proves. A series with files that could not be read is never ``ok``.

Real emulator over loopback, a real fetched copy, the real CLI; the local state is real
SQLite, edited only to stand for bit rot (bytes changed, stat data unchanged).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from nbia_audit.emulator import CorpusSpec
from nbia_audit.store.statkey import stat_key
from tests.support.cli import run_cli
from tests.support.lock_tools import lock_and_fetch

SPEC = CorpusSpec(seed=31, collections=1, patients=2, studies=1, series=2, images=2)


@pytest.fixture
def fetched(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    for lock, data in lock_and_fetch(SPEC, tmp_path, tmp_path / "data"):
        age(data)
        yield lock, data


OLD_NS = 1_600_000_000 * 10**9  # 2020: far outside any "racily clean" window


def age(data: Path) -> None:
    """Date every file well before the records a pass makes, so stat keys can be trusted."""
    for path in data.rglob("*.dcm"):
        os.utime(path, ns=(OLD_NS, OLD_NS))


def invoke(*args: str) -> tuple[int, str]:
    result = run_cli(*args)
    return result.exit_code, result.stdout


def verify_json(lock: Path, data: Path, *extra: str) -> dict[str, object]:
    code, out = invoke("verify", str(lock), str(data), "--format", "json", "-q", *extra)
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def rot_under_unchanged_stat(data: Path) -> Path:
    """Change one image's bytes as bit rot would: the state's stat key still matches."""
    victim = sorted(data.rglob("*.dcm"))[0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    os.utime(victim, ns=(OLD_NS, OLD_NS))
    st = victim.stat()
    rel = victim.relative_to(data).as_posix()
    with sqlite3.connect(data / ".nbia-audit" / "state.db") as db:
        changed = db.execute(
            "UPDATE files SET fs_id=?, inode=?, size=?, mtime_ns=?, ctime_ns=? WHERE path=?",
            (stat_key(victim).fs, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, rel),
        ).rowcount
    assert changed == 1
    return victim


def test_stat_never_says_verified_in_any_output(fetched: tuple[Path, Path], tmp_path: Path) -> None:
    lock, data = fetched
    full = verify_json(lock, data)  # records every file's MD5 and fingerprint
    assert full["clean"] is True and full["proof"] == "content" and full["verified"] is True
    rot_under_unchanged_stat(data)

    stat = verify_json(lock, data, "--level", "stat")
    assert stat["proof"] == "stat" and stat["verified"] is False
    assert stat["proven_on"] == today()
    series = stat["series"]
    assert isinstance(series, list) and {s["proof"] for s in series} == {"stat"}

    code, text = invoke("verify", str(lock), str(data), "--level", "stat", "-q")
    head = text.splitlines()[0]
    assert code == 0 and "CLEAN" not in head and "verified:" not in head
    assert f"UNCHANGED (unchanged since verified by content on {today()}" in head
    assert "series: 4 ok of 4 (proof: stat)" in text

    code, junit = invoke("verify", str(lock), str(data), "--level", "stat", "--format", "junit")
    props = {p.get("name"): p.get("value") for p in ET.fromstring(junit).iter("property")}
    assert props["proof"] == "stat" and "no file was re-read" in str(props["proof_means"])

    for fmt in ("md", "html"):
        code, page = invoke("report", str(lock), "--verify", str(data), "--level", "stat",
                            "--format", fmt)  # fmt: skip
        assert code == 0 and "series verified" not in page and "Verified at" not in page
        assert f"all 4 series unchanged since verified by content on {today()}" in page
    code, page = invoke("report", str(lock), "--verify", str(data), "--level", "stat",
                        "--format", "json")  # fmt: skip
    verification = json.loads(page)["verification"]
    assert verification["proof"] == "stat" and verification["verified"] is False

    # The words were right to hold back: reading the bytes finds the rot.
    code, page = invoke("report", str(lock), "--verify", str(data), "--level", "full")
    assert code == 1 and "FINDINGS: 1 modified" in page


def test_quick_says_what_its_fingerprint_proves(fetched: tuple[Path, Path]) -> None:
    lock, data = fetched
    assert verify_json(lock, data)["verified"] is True
    quick = verify_json(lock, data, "--level", "quick")
    assert quick["clean"] is True and quick["proof"] == "fingerprint"
    assert quick["verified"] is False and quick["proven_on"] == today()
    code, text = invoke("verify", str(lock), str(data), "--level", "quick", "-q")
    assert code == 0 and "xxh3-128 fingerprint equal to the one recorded then" in text
    assert "CLEAN (verified" not in text
    code, page = invoke("report", str(lock), "--verify", str(data), "--level", "quick")
    assert code == 0 and "series verified" not in page
    assert f"unchanged since verified by content on {today()}" in page


def test_full_alone_says_verified(fetched: tuple[Path, Path]) -> None:
    lock, data = fetched
    code, text = invoke("verify", str(lock), str(data), "-q")
    assert code == 0 and text.startswith(f"verify {lock}: CLEAN (verified: every file's content")
    code, page = invoke("report", str(lock), "--verify", str(data))
    assert code == 0 and "clean: all 4 series verified: every file's content hashed" in page


def test_a_remembered_stat_pass_claims_no_more_than_stat(fetched: tuple[Path, Path]) -> None:
    lock, data = fetched
    shutil.rmtree(data / ".nbia-audit")  # no records: this stat pass hashes every file
    first = verify_json(lock, data, "--level", "stat")
    assert first["proof"] == "content" and first["verified"] is True
    # Nothing changed: the next stat pass answers from its memo without reading a byte.
    again = verify_json(lock, data, "--level", "stat")
    facts = again["facts"]
    assert isinstance(facts, dict) and "memo" in facts
    assert again["proof"] == "stat" and again["verified"] is False
    assert again["proven_on"] == today()


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores permission bits and setpriv (util-linux) is not there")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def test_a_series_whose_folder_cannot_be_listed_is_never_ok(
    fetched: tuple[Path, Path],
) -> None:
    lock, data = fetched
    prefix = _as_nobody()
    top = Path(tempfile.mkdtemp(prefix="nbia-words-"))
    try:
        top.chmod(0o755)
        shutil.copy2(lock, top / lock.name)
        shutil.copy2(lock.with_name(lock.name + ".db"), top / (lock.name + ".db"))
        copy = top / "data"
        shutil.copytree(data, copy)
        assert verify_json(top / lock.name, copy)["clean"] is True  # records every file
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        folder = sorted(copy.rglob("*.dcm"))[0].parent
        hidden = str(pydicom.dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID)
        probe = [*prefix, sys.executable, "-c", "import nbia_audit"]
        if subprocess.run(probe, capture_output=True).returncode:
            pytest.skip("the unprivileged user cannot run this checkout's Python")
        folder.chmod(0o000)
        command = [*prefix, sys.executable, "-m", "nbia_audit", "verify", str(top / lock.name)]
        command += [str(copy), "-q"]
        done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True)
        assert "Traceback" not in done.stderr, done.stderr
        report = json.loads(done.stdout)
        status = {s["series_uid"]: s["status"] for s in report["series"]}
        assert status[hidden] == "not-checked" and report["clean"] is False
        assert done.returncode != 0
        done = subprocess.run([*command, "--format", "junit"], capture_output=True, text=True)
        case = next(c for c in ET.fromstring(done.stdout).iter("testcase")
                    if c.get("name") == hidden)  # fmt: skip
        assert case.find("error") is not None or case.find("failure") is not None
    finally:
        for path in [top, *top.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(top)

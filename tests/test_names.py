"""Any name (issue 10 #5): file and folder names that are not valid UTF-8, anywhere in a copy,
are reported (escaped, ``\\xNN`` per byte) like any other path by ``verify`` and ``report``,
in every output format, at every level; never a traceback.

A real fetched copy, real renames on disk (bytes paths), the real CLI in a child process
(its standard streams are real UTF-8 pipes, as in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.fetch.run import fetch_dataset
from nbia_audit.lock.run import lock_dataset

SPEC = CorpusSpec(seed=37, collections=1, patients=1, studies=1, series=2, images=2)
OLD_NS = 1_600_000_000 * 10**9


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    with Emulator.from_spec(SPEC) as emu, NbiaClient(emu.base_url) as client:
        spec = tmp_path / "dataset.yaml"
        name = emu.corpus.collections[0].name
        spec.write_text(f"name: n\nserver: {emu.base_url}\nselect:\n  - collection: {name}\n")
        lock = lock_dataset(spec, ArchiveView(client)).lock_path
        data = tmp_path / "data"
        assert fetch_dataset(lock, data, client).ok
    root = bytes(data)
    try:
        os.mkdir(root + b"/odd\xff")
        with open(root + b"/odd\xff/stray\xfe\x1b[2J.txt", "wb") as handle:
            handle.write(b"not an image")
    except OSError as exc:  # pragma: no cover - a file system that insists on UTF-8
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    # A locked image moved under a name that is not UTF-8: still found, by its content.
    image = bytes(sorted(data.rglob("*.dcm"))[0])
    os.rename(image, root + b"/odd\xff/image-\xe9.dcm")
    for path in data.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(OLD_NS, OLD_NS))
    yield lock, data


STRAY = "odd\\xff/stray\\xfe\\x1b[2J.txt"  # as the text and JUnit reports show it
STRAY_JSON = "odd\\xff/stray\\xfe\x1b[2J.txt"


def run(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "nbia_audit", *args],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")  # strict: valid UTF-8
    assert "Traceback" not in err, err
    return done.returncode, out, err


@pytest.mark.parametrize("level", ["full", "quick", "stat"])
def test_verify_reports_a_name_that_is_not_utf8_in_every_format(
    copy: tuple[Path, Path], level: str
) -> None:
    lock, data = copy
    for _ in range(2):  # the second pass reads the records (and memo) the first one wrote
        code, text, _ = run("verify", str(lock), str(data), "--level", level, "-q")
        assert code == 1, text
        assert f"unexpected: at {STRAY} - not DICOM" in text
        assert "\x1b" not in text

    code, out, _ = run("verify", str(lock), str(data), "--level", level, "--format", "json")
    document = json.loads(out)
    # JSON keeps the ESC as JSON escapes it (\u001b); only the bytes that are not UTF-8
    # need the visible form.
    assert code == 1 and [f["path"] for f in document["findings"]] == [STRAY_JSON]
    assert all(s["status"] == "ok" for s in document["series"])  # the moved image counts

    code, out, _ = run("verify", str(lock), str(data), "--level", level, "--format", "junit")
    failures = [f.text or "" for f in ET.fromstring(out).iter("failure")]
    assert code == 1 and any(STRAY in text for text in failures)


def test_report_states_a_name_that_is_not_utf8(copy: tuple[Path, Path]) -> None:
    lock, data = copy
    for fmt in ("md", "html"):
        code, out, _ = run("report", str(lock), "--verify", str(data), "--format", fmt)
        assert code == 1 and "FINDINGS: 1 unexpected" in out, out
    code, out, _ = run("report", str(lock), "--verify", str(data), "--format", "json")
    assert code == 1 and json.loads(out)["verification"]["counts"] == {"unexpected": 1}

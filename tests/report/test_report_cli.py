"""`nbia-audit report`: the supplement from a lock, with and without verifying a copy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from tests.support.cli import run_cli
from tests.support.lock_tools import lock_and_fetch

SPEC = CorpusSpec(seed=31, collections=1, patients=2, studies=1, series=2, images=2)


@pytest.fixture
def fetched(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield from lock_and_fetch(SPEC, tmp_path, tmp_path / "data")


def invoke(*args: str) -> tuple[int, str]:
    result = run_cli(*args)
    return result.exit_code, result.output


def test_report_formats_and_verified_copy(fetched: tuple[Path, Path], tmp_path: Path) -> None:
    lock, data = fetched
    code, out = invoke("report", str(lock))
    assert code == 0 and out.startswith("# Data supplement: r")
    page = tmp_path / "s.html"
    code, _ = invoke(
        "report", str(lock), "--verify", str(data), "--format", "html", "--output", str(page)
    )
    assert code == 0 and "clean: all 4 series verified" in page.read_text()
    code, out = invoke("report", str(lock), "--format", "json")
    assert code == 0 and json.loads(out)["dataset"]["series"] == 4


def test_report_exits_1_when_the_copy_does_not_verify(fetched: tuple[Path, Path]) -> None:
    lock, data = fetched
    victim = next(p for p in sorted(data.rglob("*.dcm")))
    victim.unlink()
    code, out = invoke("report", str(lock), "--verify", str(data))
    assert code == 1 and "FINDINGS: 1 missing" in out


def test_report_of_a_missing_lock_is_exit_3(tmp_path: Path) -> None:
    code, out = invoke("report", str(tmp_path / "none.lock"))
    assert code == 3 and "lock not found" in out


def test_the_install_line_readers_get_can_be_set(fetched: tuple[Path, Path]) -> None:
    lock, _ = fetched
    pinned = "python3 -m pip install 'nbia-audit @ git+https://example.org/nbia-audit@v0.1.0'"
    code, out = invoke("report", str(lock), "--install-command", pinned)
    assert code == 0 and pinned in out


def test_report_of_a_copy_with_images_nothing_can_prove_is_exit_3(tmp_path: Path) -> None:
    from tests.support.verify import download_all, make_lock, materialise

    with Emulator.from_spec(SPEC) as emu:
        emu.set_stored_md5(emu.corpus.images[0].sop_uid, None)
        lock = make_lock(tmp_path / "lock", emu)
        data = tmp_path / "data"
        materialise(emu, download_all(emu, tmp_path / "zips"), data, "ours")
    for fmt in ("md", "html", "json"):
        code, out = invoke("report", str(lock), "--verify", str(data), "--format", fmt)
        assert code == 3, (fmt, out)
        assert "clean: all" not in out and '"clean": true' not in out, fmt

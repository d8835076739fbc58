"""The publication supplement: content from the lock alone, three formats, rendered in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.findings import AuditReport, Finding, SeriesStatus
from nbia_audit.lock.run import lock_dataset
from nbia_audit.report.supplement import build_supplement
from nbia_audit.report.supplement_render import render_supplement
from nbia_audit.store.reader import read_lock

SPEC = CorpusSpec(seed=21, collections=2, patients=2, studies=1, series=2, images=2)


@pytest.fixture(scope="module")
def lock_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("supplement")
    with Emulator.from_spec(SPEC) as emu, NbiaClient(emu.base_url) as client:
        names = sorted(c.name for c in emu.corpus.collections)
        spec = folder / "study.yaml"
        spec.write_text(
            f"name: paper-2026\ndescription: 'CT & MR <cohort>'\nserver: {emu.base_url}\n"
            f"select:\n  - collection: {names[0]}\n  - collection: {names[1]}\n"
        )
        return lock_dataset(spec, ArchiveView(client)).lock_path


def verification(clean: bool, lock_path: Path) -> AuditReport:
    """A verify report of the lock at ``lock_path`` (a supplement takes no other)."""
    findings = () if clean else (Finding("missing", series_uid="1.2", sop_uid="1.2.3"),)
    return AuditReport(
        command="verify",
        lock_path="study.lock",
        root_digest=read_lock(lock_path, load_images=False).header.root_digest,
        started_at="2026-11-25T06:00:00Z",
        finished_at="2026-11-25T06:00:05Z",
        findings=findings,
        series=(SeriesStatus("1.2", "ok" if clean else "problem"),),
        complete=True,
        facts={"level": "full"},
        proof="content",
    )


def test_supplement_states_the_dataset(lock_path: Path) -> None:
    s = build_supplement(lock_path)
    assert s.header.series_count == 8 and s.subjects == 4 and s.studies == 4
    assert len(s.collections) == 2 and all(c.dois and c.licenses for c in s.collections)
    assert s.licenses and all(lic.commercial_use in ("YES", "NO") for lic in s.licenses)
    assert s.reader_commands()[1] == "nbia-audit fetch study.lock --dest data/"
    assert s.verification is None


def test_markdown_and_json(lock_path: Path) -> None:
    s = build_supplement(lock_path, verification(True, lock_path))
    md = render_supplement(s, "md")
    assert md.startswith("# Data supplement: paper-2026")
    assert s.header.root_digest in md and "nbia-audit verify study.lock data/" in md
    assert "Checked at level `full` on 2026-11-25T06:00:05Z: clean: all 1 series verified" in md
    doc = json.loads(render_supplement(s, "json"))
    assert doc["schema"] == 1 and doc["lock"]["root_digest"] == s.header.root_digest
    assert doc["dataset"]["series"] == 8 and len(doc["series"]) == 8
    assert doc["verification"]["clean"] is True


def test_html_is_self_contained_and_escaped(lock_path: Path) -> None:
    page = render_supplement(build_supplement(lock_path, verification(False, lock_path)), "html")
    assert "CT &amp; MR &lt;cohort&gt;" in page  # the spec's description, escaped
    assert "<script" not in page and "src=" not in page and "<link" not in page
    assert "FINDINGS: 1 missing" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(lock_path: Path, tmp_path: Path) -> None:
    s = build_supplement(lock_path, verification(True, lock_path))
    page = tmp_path / "supplement.html"
    page.write_text(render_supplement(s, "html"), encoding="utf-8")
    flags = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    # What the browser shows: the digest, every collection row, the verdict and the commands.
    assert f'<code id="root-digest">{s.header.root_digest}</code>' in dom
    for collection in s.collections:
        assert f"<td>{collection.name}</td>" in dom
    assert "clean: all 1 series verified" in dom
    assert "nbia-audit verify study.lock data/" in dom
    pdf = tmp_path / "supplement.pdf"
    subprocess.run(
        [*flags, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000

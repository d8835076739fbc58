"""Rendering audit reports: text verdicts, JSON shape, JUnit structure."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from nbia_audit.findings import AuditReport, Finding, SeriesStatus
from nbia_audit.report.render import render_json, render_junit, render_text


def report(findings: tuple[Finding, ...] = (), complete: bool = True) -> AuditReport:
    return AuditReport(
        command="verify",
        lock_path="d.lock",
        root_digest="sha256:x",
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        findings=findings,
        series=(SeriesStatus("1.1", "ok", "hash ok", "C"), SeriesStatus("1.2", "problem", "", "C")),
        complete=complete,
        facts={"level": "full"},
    )


FINDINGS = (
    Finding("missing", series_uid="1.2", sop_uid="1.2.1"),
    Finding("unexpected", path="junk/<x>&.dcm", sop_uid="9.9"),
    Finding("duplicate", series_uid="1.2", sop_uid="1.2.2", paths=("a.dcm", "b.dcm")),
)


def test_clean_only_when_complete_and_empty() -> None:
    assert report().clean
    assert not report(complete=False).clean
    assert not report(FINDINGS).clean
    assert "CLEAN" in render_text(report())
    assert "INCOMPLETE" in render_text(report(complete=False))


def test_text_lists_findings_by_kind() -> None:
    text = render_text(report(FINDINGS))
    assert "FINDINGS" in text and "missing: 1" in text and "at a.dcm, b.dcm" in text


def test_json_document() -> None:
    doc = json.loads(render_json(report(FINDINGS)))
    assert doc["schema"] == 1 and doc["clean"] is False
    assert doc["counts"] == {"duplicate": 1, "missing": 1, "unexpected": 1}
    assert {"kind": "missing", "series_uid": "1.2", "sop_uid": "1.2.1"} in doc["findings"]
    assert doc["facts"] == {"level": "full"}


def test_junit_one_case_per_series_plus_unlocked_files() -> None:
    root = ET.fromstring(render_junit(report(FINDINGS, complete=False)))
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["1.1", "1.2", "(files not in the lock)", "(check completeness)"]
    assert root.get("failures") == "2" and root.get("errors") == "1" and root.get("tests") == "4"
    failure = root.find("testcase[@name='1.2']/failure")
    assert failure is not None and "missing" in (failure.text or "")
    # Hostile characters in paths are escaped, and the XML still parses back to them.
    unlocked = root.find("testcase[@name='(files not in the lock)']/failure")
    assert unlocked is not None and "junk/<x>&.dcm" in (unlocked.text or "")

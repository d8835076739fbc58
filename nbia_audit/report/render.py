"""Render an :class:`~nbia_audit.findings.AuditReport` as text, JSON or JUnit XML.

Pure functions from a report to a string; no I/O. The JSON form is documented in
docs/report-schema.md; JUnit has one test case per locked series so CI systems show
exactly which series failed.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from collections import defaultdict

from nbia_audit.findings import REPORT_SCHEMA_VERSION, AuditReport, Finding, SeriesState
from nbia_audit.report.escaping import for_terminal, for_xml, json_safe
from nbia_audit.verify.words import claim, headline

__all__ = ["render", "render_json", "render_junit", "render_text"]

FORMATS = ("text", "json", "junit")
_NO_SERIES = "(files not in the lock)"
_TEXT_LIMIT = 50  # findings listed per kind on a terminal; JSON and JUnit list them all


def render(report: AuditReport, fmt: str) -> str:
    """Render in ``fmt`` (``text``, ``json`` or ``junit``)."""
    if fmt == "json":
        return render_json(report)
    if fmt == "junit":
        return render_junit(report)
    return render_text(report)


def _describe(finding: Finding) -> str:
    parts: list[str] = [finding.kind]
    if finding.series_uid:
        parts.append(f"series {finding.series_uid}")
    if finding.sop_uid:
        parts.append(f"image {finding.sop_uid}")
    if finding.path:
        parts.append(f"at {finding.path}")
    if finding.paths:
        parts.append("at " + ", ".join(finding.paths))
    text = ": ".join([parts[0], " ".join(parts[1:])]) if len(parts) > 1 else parts[0]
    if finding.old or finding.new:
        text += f" ({finding.old!r} -> {finding.new!r})"
    if finding.detail:
        text += f" - {finding.detail}"
    return text


def render_text(report: AuditReport) -> str:
    """A readable summary: the verdict first, then counts, then the findings by kind."""
    lines = []
    if report.clean:
        verdict = headline(report.proof, report.proven_on)
    elif not report.complete:
        verdict = "INCOMPLETE (the check could not cover everything; not clean)"
    else:
        verdict = "FINDINGS"
    lines.append(f"{report.command} {report.lock_path}: {verdict}")
    for key, value in report.facts.items():
        if value == 0 and not isinstance(value, bool):
            continue  # a zero count says nothing on a terminal (JSON keeps every fact)
        lines.append(f"  {key}: {value}")
    ok = sum(1 for s in report.series if s.status == SeriesState.OK)
    at = f" (proof: {report.proof})" if report.proof not in ("", "content") else ""
    lines.append(f"  series: {ok} ok of {len(report.series)}{at}")
    by_kind: defaultdict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        by_kind[finding.kind].append(finding)
    for kind, items in sorted(by_kind.items()):
        lines.append(f"  {kind}: {len(items)}")
        for finding in items[:_TEXT_LIMIT]:
            lines.append(f"    {_describe(finding)}")
        if len(items) > _TEXT_LIMIT:
            lines.append(f"    ... and {len(items) - _TEXT_LIMIT} more (use --format json)")
    # File names and archive strings reach a terminal: nothing in them may act on it.
    return "\n".join(for_terminal(line) for line in lines) + "\n"


def render_json(report: AuditReport) -> str:
    """One JSON document (schema in docs/report-schema.md), keys sorted."""
    document = {
        "schema": REPORT_SCHEMA_VERSION,
        "command": report.command,
        "lock": report.lock_path,
        "root_digest": report.root_digest,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "complete": report.complete,
        "clean": report.clean,
        # What "clean" rests on: only "content" means every file was hashed in this run.
        "proof": report.proof or None,
        "proven_on": report.proven_on or None,
        "verified": report.verified,
        "facts": dict(report.facts),
        "counts": report.counts(),
        "series": [dataclasses.asdict(s) for s in report.series],
        "findings": [
            {k: v for k, v in dataclasses.asdict(f).items() if v not in ("", ())}
            for f in report.findings
        ],
    }
    return json.dumps(json_safe(document), indent=2, sort_keys=True, default=str) + "\n"


def render_junit(report: AuditReport) -> str:
    """JUnit XML: one test case per series, failures listing that series' findings."""
    by_series: defaultdict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        by_series[finding.series_uid or _NO_SERIES].append(finding)
    suite = ET.Element("testsuite", name=f"nbia-audit {report.command}")
    if report.proof:
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="proof", value=report.proof)
        words = claim(report.proof, report.proven_on)
        ET.SubElement(properties, "property", name="proof_means", value=words)
    cases = 0
    failures = 0
    errors = 0
    for status in report.series:
        case = ET.SubElement(
            suite, "testcase", classname=status.collection or "nbia", name=status.series_uid
        )
        cases += 1
        found = by_series.pop(status.series_uid, [])
        if found:
            failures += 1
            failure = ET.SubElement(case, "failure", message=f"{len(found)} finding(s)")
            failure.text = "\n".join(_describe(f) for f in found)
        elif status.status != SeriesState.OK:
            # Not read or not judged in full: never a pass, never a skip CI would hide.
            errors += 1
            ET.SubElement(case, "error", message="not checked").text = status.detail
        elif status.proof:
            says = claim(status.proof, report.proven_on)
            ET.SubElement(case, "system-out").text = f"{says}; {status.detail}"
        elif status.detail:
            ET.SubElement(case, "system-out").text = status.detail
    for key, found in sorted(by_series.items()):
        case = ET.SubElement(suite, "testcase", classname="nbia", name=key)
        cases += 1
        failures += 1
        failure = ET.SubElement(case, "failure", message=f"{len(found)} finding(s)")
        failure.text = "\n".join(_describe(f) for f in found)
    if not report.complete:
        case = ET.SubElement(suite, "testcase", classname="nbia", name="(check completeness)")
        cases += 1
        errors += 1
        ET.SubElement(case, "error", message="the check could not cover everything")
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    _xml_safe(suite)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, "unicode") + "\n"


def _xml_safe(root: ET.Element) -> None:
    """Apply :func:`~nbia_audit.report.escaping.for_xml` to every text and attribute in the tree."""
    for element in root.iter():
        if element.text:
            element.text = for_xml(element.text)
        for key, value in element.attrib.items():
            element.set(key, for_xml(value))

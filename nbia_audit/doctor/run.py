"""``doctor``: does the archive still behave as nbia-audit assumes? A live conformance check.

It sends a few dozen read-only requests at most (:data:`~nbia_audit.doctor.http.REQUEST_BUDGET`)
about one small public series and judges every answer against the model the rest of
nbia-audit is built on. A failed row means "NBIA changed, do not trust a lock made on the old
assumption before looking"; an unreachable archive means the check could not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

from nbia_audit.client.auth import Credentials
from nbia_audit.client.servers import SERVER_ALIASES, resolve_server
from nbia_audit.doctor.checks import (
    Check,
    SeriesFacts,
    Verdict,
    describe,
    discover_series,
    json_rows,
    series_checks,
)
from nbia_audit.doctor.http import Prober, Unreachable
from nbia_audit.doctor.quirks import Secrets, empty_answer_checks, token_checks
from nbia_audit.doctor.selection import selection_checks
from nbia_audit.doctor.tree import tree_checks

__all__ = ["SAMPLE_SERIES", "DoctorReport", "SampleSeries", "run_doctor"]


@dataclass(frozen=True, slots=True)
class SampleSeries:
    """A small public series known on a named server, and where we know it from."""

    series_uid: str
    source: str


# Chosen from ../shared/real-samples, which holds only answers the live archive gave.
SAMPLE_SERIES: dict[str, SampleSeries] = {
    "public": SampleSeries(
        "1.3.6.1.4.1.14519.5.2.1.6279.6001.493562949900213760403901722902",
        "real-samples/getSeries__1.pyrepr.txt: LIDC-IDRI, patient LIDC-IDRI-0002, DX, "
        "ImageCount 1 (services/v1/getSeries, recorded on or before 2022-10-13)",
    ),
    "nlst": SampleSeries(
        "1.2.840.113654.2.55.85646041831478784820085978073099583442",
        "real-samples/errors__2.client-log.txt: an NLST series (tcia_utils log, 2025-01-17); "
        "its size is unknown, so per-image rows may be skipped: pass --series for a smaller one",
    ),
}


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """The table, the sample it was run on, and how many requests it took."""

    server: str
    series_uid: str | None
    series_source: str
    checks: tuple[Check, ...]
    requests: int
    unreachable: str | None  # why the run stopped early, or None

    @property
    def failed(self) -> tuple[Check, ...]:
        """The rows where the archive no longer behaves as assumed."""
        return tuple(c for c in self.checks if c.verdict is Verdict.FAIL)

    @property
    def complete(self) -> bool:
        """True when every row could be asked (the archive stayed reachable)."""
        return self.unreachable is None

    def to_json(self) -> dict[str, object]:
        """The report as ``--format json`` prints it (and ``--record`` keeps it)."""
        return {
            "server": self.server,
            "series": self.series_uid,
            "series_source": self.series_source,
            "requests": self.requests,
            "complete": self.complete,
            "unreachable": self.unreachable,
            "failed": [c.name for c in self.failed],
            "checks": [c.to_json() for c in self.checks],
        }


def run_doctor(
    server: str,
    *,
    credentials: Credentials | None = None,
    series_uid: str | None = None,
    session: requests.Session | None = None,
) -> tuple[DoctorReport, Prober, Secrets]:
    """Run every row against ``server`` (alias or URL); the prober holds the exchanges.

    Raises:
        ValueError: ``server`` is not a known alias or a usable URL.
    """
    urls = resolve_server(server)
    prober = Prober(urls, session=session)
    secrets = Secrets()
    checks: list[Check] = []
    # The public host named by its URL is still the public host.
    alias = next((name for name, url in SERVER_ALIASES.items() if url == urls.services), "")
    sample = SAMPLE_SERIES.get(alias)
    if series_uid is not None:
        source = "given with --series"
    elif sample is not None:
        series_uid, source = sample.series_uid, sample.source
    else:
        source = "discovered: the smallest series of the first collection listed"
    unreachable = None
    try:
        collections = _collections(prober, checks)
        if series_uid is None:
            row, series_uid = discover_series(prober, collections)
            checks.append(row)
        if series_uid is not None:
            facts = SeriesFacts(series_uid)
            checks += series_checks(prober, facts)
            checks += tree_checks(prober, facts)
            checks += selection_checks(prober, facts)
            checks += empty_answer_checks(prober, series_uid)
            checks += token_checks(prober, credentials, series_uid, facts.archive_hash, secrets)
    except Unreachable as exc:
        unreachable = str(exc)
    finally:
        prober.close()
    report = DoctorReport(
        server=urls.services,
        series_uid=series_uid,
        series_source=source,
        checks=tuple(checks),
        requests=prober.count,
        unreachable=unreachable,
    )
    return report, prober, secrets


def _collections(prober: Prober, checks: list[Check]) -> list[str]:
    title = "v4 without a token runs as guest: getCollectionValues"
    expected = '200, JSON array of {"Collection": name}, not empty'
    answer = prober.get("v4/getCollectionValues")
    rows = json_rows(answer)
    names = [str(r["Collection"]) for r in rows or [] if isinstance(r.get("Collection"), str)]
    ok = answer.status == 200 and bool(rows) and rows is not None and len(names) == len(rows)
    note = f"{len(names)} collection(s)" if ok else "not such an array"
    verdict = Verdict.PASS if ok else Verdict.FAIL
    checks.append(Check("anonymous-v4", title, expected, describe(answer, note), verdict))
    return names


def write_text_report(report: DoctorReport) -> str:
    """The table as text: check, expected, answered, verdict; then a summary line."""
    lines = [
        f"nbia-audit doctor: {report.server}",
        f"series {report.series_uid or '(none)'} ({report.series_source})",
        "",
    ]
    for check in report.checks:
        mark = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}[check.verdict.value]
        lines.append(f"[{mark}] {check.name}: {check.title}")
        lines.append(f"       expected: {check.expected}")
        lines.append(f"       answered: {check.answered}")
    lines.append("")
    if report.unreachable:
        lines.append(f"could not finish: {report.unreachable}")
    passed = sum(c.verdict is Verdict.PASS for c in report.checks)
    skipped = sum(c.verdict is Verdict.SKIP for c in report.checks)
    failed = [c.name for c in report.failed]
    summary = (
        f"{passed} passed, {len(failed)} failed, {skipped} skipped; {report.requests} requests"
    )
    lines.append(summary)
    if failed:
        lines.append("the archive no longer behaves as nbia-audit assumes: " + ", ".join(failed))
    return "\n".join(lines) + "\n"


def record_path_hint(directory: Path) -> str:
    """The one line telling the user where the evidence went."""
    return f"evidence (secrets removed) written to {directory}"

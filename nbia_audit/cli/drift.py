"""``nbia-audit drift``: what changed upstream since a lock (library: ``nbia_audit.drift``)."""

from __future__ import annotations

from pathlib import Path

import click

from nbia_audit.cli.common import (
    Progress,
    archive_workers_option,
    command,
    deliver,
    fail,
    finish_report,
    guard_output,
    make_archive,
    quiet_option,
    report_options,
)
from nbia_audit.cli.signals import interruptible
from nbia_audit.drift.run import check_drift
from nbia_audit.errors import NbiaAuditError
from nbia_audit.findings import AuditReport
from nbia_audit.report.escaping import for_terminal
from nbia_audit.report.render import render

__all__ = ["drift"]


@command()
@click.argument("lock", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--fast",
    is_flag=True,
    help="About one request per whole collection: trust the archive's nightly collection "
    "hashes where they match (the report states the staleness window).",
)
@report_options
@archive_workers_option
@quiet_option
@interruptible("drift")
def drift(lock: Path, fast: bool, fmt: str, output: Path | None, workers: int, quiet: bool) -> None:
    """Report what changed upstream since LOCK (dataset.lock) was made.

    Asks the lock's server (credentials from NBIA_USER/NBIA_PASSWORD), descending NBIA's
    hash tree only where hashes differ; the report says what each level proved and as of
    when. Drift found by a check that could not finish still exits 1 (the report says
    INCOMPLETE); an unfinished check that found nothing exits 3, never 0.
    """
    guard_output(output, lock)

    try:
        report = check_drift(
            lock,
            lambda header: make_archive(header.server, header.api),
            fast=fast,
            workers=workers,
            on_progress=Progress(quiet),
        )
        text = render(report, fmt)
    except NbiaAuditError as error:
        fail(error)
    deliver(text, output, findings=bool(report.findings))
    if output is not None or fmt != "text":
        click.echo(for_terminal(_summary(report, output)), err=True)
    finish_report(report)


def _summary(report: AuditReport, output: Path | None) -> str:
    if not report.complete:
        found = f", {len(report.findings)} finding(s) so far" if report.findings else ""
        verdict = f"incomplete: could not check everything{found}"
    elif report.findings:
        verdict = f"drift: {len(report.findings)} finding(s)"
    else:
        verdict = "no drift"
    where = f"; report written to {output}" if output else ""
    return f"nbia-audit drift: {verdict}; {report.facts.get('requests', 0)} requests{where}"

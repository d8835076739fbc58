"""``nbia-audit doctor``: check that the archive still behaves as nbia-audit assumes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from nbia_audit.cli.common import (
    FOLDER,
    command,
    fail,
    finish,
    format_choice,
)
from nbia_audit.errors import NbiaAuditError

__all__ = ["doctor"]


@command()
@click.option(
    "--server",
    default="public",
    show_default=True,
    help="public, nlst, or the URL of an NBIA server (…/nbia-api/services).",
)
@click.option(
    "--series",
    "series_uid",
    help="The public series to examine (default: a known small one; found by itself on a URL).",
)
@click.option(
    "--record",
    "record_dir",
    type=FOLDER,
    help="Save every request and answer here, tokens and credentials removed, for a bug report.",
)
@format_choice(("text", "json"), "text", "Output format.")
def doctor(server: str, series_uid: str | None, record_dir: Path | None, fmt: str) -> None:
    """Check, live and read-only, that the archive behaves as nbia-audit assumes.

    At most 40 requests about one small public series: anonymous v4, parameter spellings,
    JSON shapes, the series ZIP and its md5hashes.csv, the series hash recomputed from the
    per-image MD5s and from md5hashes.csv, the study and patient hashes, the DOI and license
    lookups, the empty-answer and rejected-token rules, and, with NBIA_USER/NBIA_PASSWORD set,
    the token flow. Prints what was expected, what the archive answered, and pass or fail, and
    the number of requests; exits 1 when any row fails. See docs/doctor.md.
    """
    # lazy: only this command needs the doctor's modules (about a tenth of the CLI's start-up)
    from nbia_audit.client.auth import credentials_from_env
    from nbia_audit.doctor.record import write_record
    from nbia_audit.doctor.run import record_path_hint, run_doctor, write_text_report

    try:
        report, prober, secrets = run_doctor(
            server, credentials=credentials_from_env(), series_uid=series_uid
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(write_text_report(report), nl=False)
    if record_dir is not None:
        try:
            write_record(record_dir, report, prober.exchanges, secrets.values)
        except NbiaAuditError as error:
            fail(error)
        click.echo(record_path_hint(record_dir), err=True)
    if report.unreachable:
        click.echo(f"nbia-audit: error: {report.unreachable}", err=True)
    finish(findings=bool(report.failed), complete=report.complete)

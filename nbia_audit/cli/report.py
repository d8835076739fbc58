"""``nbia-audit report``: write the publication supplement of a lock."""

from __future__ import annotations

from pathlib import Path

import click

from nbia_audit.cli.common import (
    FILE,
    FOLDER,
    command,
    deliver,
    fail,
    finish,
    finish_report,
    format_choice,
    guard_output,
    output_option,
)
from nbia_audit.cli.signals import interruptible
from nbia_audit.errors import NbiaAuditError
from nbia_audit.findings import AuditReport
from nbia_audit.report.escaping import for_terminal
from nbia_audit.report.supplement import DEFAULT_INSTALL, build_supplement
from nbia_audit.report.supplement_render import render_supplement
from nbia_audit.verify.run import verify_copy


@command()
@click.argument("lock_path", metavar="LOCK", type=FILE)
@click.option(
    "--verify",
    "verify_dir",
    type=FOLDER,
    help="Verify this local copy first and state the result in the supplement.",
)
@click.option(
    "--level",
    type=click.Choice(["full", "quick", "stat"]),
    default="full",
    show_default=True,
    help="With --verify: how thoroughly to verify.",
)
@format_choice(("md", "html", "json"), "md")
@click.option(
    "--install-command",
    default=DEFAULT_INSTALL,
    show_default=True,
    help="How readers install nbia-audit (e.g. a VCS URL pinned to the version you used).",
)
@output_option
@interruptible("report")
def report(
    lock_path: Path,
    verify_dir: Path | None,
    level: str,
    fmt: str,
    install_command: str,
    output: Path | None,
) -> None:
    """Write the publication supplement of LOCK: what, where from, licenses, how to check."""
    guard_output(output, lock_path)

    try:
        verification = _verify(lock_path, verify_dir, level) if verify_dir else None
        supplement = build_supplement(lock_path, verification, install_command=install_command)
        text = render_supplement(supplement, fmt)
    except NbiaAuditError as error:
        fail(error)
    findings = verification is not None and bool(verification.findings)
    deliver(text, output, findings=findings)
    if output is not None:
        click.echo(for_terminal(f"Wrote {output}"), err=True)
    if verification is None:
        finish(findings=False)
    finish_report(verification)


def _verify(lock_path: Path, root: Path, level: str) -> AuditReport:
    return verify_copy(lock_path, root, level=level)

"""Shared pieces of the command line: exit codes, error reporting, progress, the archive.

Exit codes live here and nowhere else (the same table is in the README and ``--help``).
Every ``cli_*`` module builds its commands from these; ``cli.py`` assembles the group.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

import click

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.client.auth import Credentials, credentials_from_env
from nbia_audit.errors import NbiaAuditError, SpecError, StoreError
from nbia_audit.report.escaping import for_terminal
from nbia_audit.report.file import write_report
from nbia_audit.report.render import FORMATS as REPORT_FORMATS
from nbia_audit.store.textlock import database_path
from nbia_audit.units import human_bytes

if TYPE_CHECKING:
    from nbia_audit.client.servers import ApiFamily

__all__ = [
    "CONTEXT_SETTINGS",
    "EXIT_CODE_HELP",
    "EXIT_CODE_MEANINGS",
    "EXIT_CODE_RULE",
    "ExitCode",
    "exit_code",
    "Progress",
    "exit_code_for",
    "fail",
    "format_option",
    "output_option",
    "human_bytes",
    "make_archive",
]


class ExitCode(enum.IntEnum):
    """The documented exit codes of every command."""

    CLEAN = 0  # the check ran and found nothing
    FINDINGS = 1  # the check found drift, mismatches or a stale lock
    USAGE = 2  # bad command line or dataset spec
    ENVIRONMENT = 3  # archive unreachable, disk, permissions: the check could not run


# The one description of the exit codes: --help, docs/cli.md and the README's table are
# generated from or tested against these lines.
EXIT_CODE_MEANINGS = {
    ExitCode.CLEAN: "clean: the check ran to the end and found nothing",
    ExitCode.FINDINGS: "findings: drift, mismatches, a stale lock, series not fetched or verified",
    ExitCode.USAGE: "usage: bad command line or dataset spec",
    ExitCode.ENVIRONMENT: "environment: archive unreachable, disk, permissions, a lock pair that"
    " fails its proof",
}
EXIT_CODE_RULE = (
    "Any finding exits 1, even from a check that could not finish; otherwise a check that"
    " could not finish exits 3, never 0."
)


def exit_code(*, findings: bool, complete: bool = True) -> ExitCode:
    """The exit code of every verb's result, by one rule.

    1 if there is any finding (even from a check that could not finish: what it found is
    true, and the report says it is incomplete); otherwise 3 if the check could not
    complete (it never reads clean); otherwise 0.
    """
    if findings:
        return ExitCode.FINDINGS
    if not complete:
        return ExitCode.ENVIRONMENT
    return ExitCode.CLEAN


# Every command carries these itself, so ``-h`` works and ``--help`` reads the same whether
# a command is invoked through the ``nbia-audit`` group or on its own (as tests do).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODE_HELP = (
    "\b\nExit codes:\n"
    + "\n".join(f"  {int(code)}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())
    + "\n\n"
    + EXIT_CODE_RULE
)


# Options every report-writing command shares.
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(REPORT_FORMATS),
    default="text",
    show_default=True,
    help="Report format.",
)
output_option = click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report to this file (atomically) instead of standard output.",
)


def guard_output(output: Path | None, lock: Path) -> None:
    """Refuse an ``--output`` that would replace the lock pair or its spec (exit 2).

    The text lock is the root of trust; a report written over it (or over its database or
    spec) would destroy what a paper cites.
    """
    if output is None:
        return
    protected = (lock, database_path(lock), lock.with_suffix(".yaml"), lock.with_suffix(".yml"))
    target = os.path.realpath(output)
    for path in protected:
        if target == os.path.realpath(path):
            raise click.BadParameter(
                f"{output} is {path.name}, part of the lock being read; write the report"
                " elsewhere",
                param_hint="'--output'",
            )


def deliver(text: str, output: Path | None, *, findings: bool) -> None:
    """Write a report to ``output`` (atomically) or to standard output.

    When it cannot be written (a full disk, a closed pipe, a missing folder) say so in one
    line and exit by the one rule: the findings stand (1); otherwise the check's result was
    not delivered (3). Never a traceback.
    """
    try:
        if output is None:
            click.echo(text, nl=False)
            sys.stdout.flush()
        else:
            write_report(output, text)
    except (OSError, StoreError) as error:
        if output is None:
            # Nothing more may reach the broken stream, not even at interpreter exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else ""
            message = f"cannot write the report to standard output ({reason or error})"
        else:
            message = str(error)
        with contextlib.suppress(OSError):  # standard error gone too: the exit code remains
            click.echo(for_terminal(f"nbia-audit: error: {message}"), err=True)
        sys.exit(exit_code(findings=findings, complete=False))


def exit_code_for(error: NbiaAuditError) -> ExitCode:
    """Map an exception from the library onto the documented exit code."""
    # Everything but a bad spec means the check could not be performed: archive, store,
    # disk. Findings never arrive here; they are values in a report.
    return ExitCode.USAGE if isinstance(error, SpecError) else ExitCode.ENVIRONMENT


def fail(error: NbiaAuditError) -> NoReturn:
    """Print ``error`` (never a traceback) and exit with its code."""
    # Messages quote file names and archive answers: nothing in them may act on a terminal.
    click.echo(for_terminal(f"nbia-audit: error: {error}", keep_newlines=True), err=True)
    sys.exit(exit_code_for(error))


class Progress:
    """Turns the library's ``on_progress(stage, done, total)`` calls into terminal output.

    On a terminal: one line rewritten in place. Elsewhere (CI, pipes) or with ``--quiet``:
    nothing but the final summary, so logs stay readable.
    """

    def __init__(self, quiet: bool) -> None:
        self.live = not quiet and sys.stderr.isatty() and not os.environ.get("CI")
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.live:
            return
        end = "\n" if done == total else ""
        click.echo(f"\r  {stage}: {done}/{total}\x1b[K", err=True, nl=False)
        if end:
            click.echo("", err=True)


def make_archive(server: str, api: str) -> ArchiveView:
    """Build the archive view for a spec's server and API family.

    Credentials come from ``NBIA_USER``/``NBIA_PASSWORD``, or a hidden prompt when only the
    user is set and a terminal is attached; never from a spec or a lock.
    """
    credentials = credentials_from_env()
    user = os.environ.get("NBIA_USER", "").strip()
    if credentials is None and user:
        if not sys.stdin.isatty():
            raise click.UsageError(
                "NBIA_USER is set but NBIA_PASSWORD is not, and there is no terminal to ask"
            )
        password = click.prompt(f"NBIA password for {user}", hide_input=True, err=True)
        credentials = Credentials(user, password)
    try:
        client = NbiaClient(server, api=cast("ApiFamily", api), credentials=credentials)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return ArchiveView(client)

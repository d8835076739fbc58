"""Shared pieces of the command line: exit codes, error reporting, progress, the archive.

Exit codes live here and nowhere else (the same table is in the README and ``--help``): a
command ends through ``finish`` (its result, by ``exit_code``) or ``fail`` (an error, by
``exit_code_for``). Every command module builds on these; ``cli/main.py`` assembles the group.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from nbia_audit.archive.protocol import Archive
from nbia_audit.archive.resolve import open_archive
from nbia_audit.client.auth import Credentials, credentials_from_env
from nbia_audit.errors import NbiaAuditError, SpecError, StoreError
from nbia_audit.findings import AuditReport
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
    "FILE",
    "FOLDER",
    "EXIT_CODE_MEANINGS",
    "EXIT_CODE_RULE",
    "ExitCode",
    "exit_code",
    "Progress",
    "exit_code_for",
    "archive_workers_option",
    "command",
    "fail",
    "finish",
    "finish_report",
    "format_choice",
    "format_option",
    "output_option",
    "quiet_option",
    "report_options",
    "workers_option",
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


def finish(*, findings: bool, complete: bool = True) -> NoReturn:
    """End a command with the exit code of its result: the one way a verb exits normally."""
    sys.exit(exit_code(findings=findings, complete=complete))


def finish_report(report: AuditReport) -> NoReturn:
    """End a command with the exit code of the audit report it delivered."""
    finish(findings=bool(report.findings), complete=report.complete)


# Every command carries these itself, so ``-h`` works and ``--help`` reads the same whether
# a command is invoked through the ``nbia-audit`` group or on its own (as tests do).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODE_HELP = (
    "\b\nExit codes:\n"
    + "\n".join(f"  {int(code)}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())
    + "\n\n"
    + EXIT_CODE_RULE
)


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# Paths as the commands take them: a file that is never a folder, a folder never a file.
FILE = click.Path(path_type=Path, dir_okay=False)
FOLDER = click.Path(path_type=Path, file_okay=False)


def command() -> Callable[[Callable[..., Any]], click.Command]:
    """A verb of ``nbia-audit``: ``-h``, the width, and the exit codes closing its help."""
    return click.command(epilog=EXIT_CODE_HELP, context_settings=CONTEXT_SETTINGS)


def format_choice(formats: Sequence[str], default: str, help: str | None = None) -> Decorator:
    """``--format`` (into ``fmt``): one of ``formats``, ``default`` shown."""
    return click.option(
        "--format", "fmt", type=click.Choice(formats), default=default, show_default=True, help=help
    )


def workers_option(most: int, help: str, default: int | None = None) -> Decorator:
    """``--workers``: how many at once, 1 to ``most``; its default shown when it has one."""
    return click.option(
        "--workers",
        type=click.IntRange(1, most),
        default=default,
        show_default=default is not None,
        help=help,
    )


# Options several commands share.
format_option = format_choice(REPORT_FORMATS, "text", "Report format.")
output_option = click.option(
    "--output",
    type=FILE,
    help="Write the report to this file (atomically) instead of standard output.",
)
archive_workers_option = workers_option(64, "Concurrent requests to the archive.", default=8)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress output.")


def report_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--format`` and ``--output``: what every command writing an audit report takes."""
    return format_option(output_option(func))


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
        finish(findings=findings, complete=False)


def exit_code_for(error: NbiaAuditError) -> ExitCode:
    """Map an exception from the library onto the documented exit code."""
    # Everything but a bad spec means the check could not be performed: archive, store,
    # disk. Findings never arrive here; they are values in a report.
    if isinstance(error, SpecError):
        return ExitCode.USAGE
    return exit_code(findings=False, complete=False)


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


def make_archive(server: str, api: str) -> Archive:
    """Open the archive for a spec's server and API family (close it when done).

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
        return open_archive(server, api=cast("ApiFamily", api), credentials=credentials)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

"""The ``nbia-audit`` command line: parse, call one library function, render, exit.

Exit codes live here and nowhere else (the same table is in the README and ``--help``).
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

import click

from . import __version__
from .errors import NbiaAuditError, SpecError

if TYPE_CHECKING:
    from .archive import ArchiveView
    from .client.servers import ApiFamily


class ExitCode(enum.IntEnum):
    """The documented exit codes of every command."""

    CLEAN = 0  # the check ran and found nothing
    FINDINGS = 1  # the check ran and found drift, mismatches or a stale lock
    USAGE = 2  # bad command line or dataset spec
    ENVIRONMENT = 3  # archive unreachable, disk, permissions: the check could not run


EXIT_CODE_HELP = """\b
Exit codes:
  0  clean: the check ran and found nothing
  1  findings: drift, mismatches, a stale lock
  2  usage: bad command line or dataset spec
  3  environment: archive unreachable, disk full, permissions"""


def exit_code_for(error: NbiaAuditError) -> ExitCode:
    """Map an exception from the library onto the documented exit code."""
    # Everything but a bad spec means the check could not be performed: archive, store,
    # disk. Findings never arrive here; they are values in a report.
    return ExitCode.USAGE if isinstance(error, SpecError) else ExitCode.ENVIRONMENT


def fail(error: NbiaAuditError) -> NoReturn:
    """Print ``error`` (never a traceback) and exit with its code."""
    click.echo(f"nbia-audit: error: {error}", err=True)
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
    from .archive import ArchiveView
    from .client import NbiaClient
    from .client.auth import Credentials, credentials_from_env

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


@click.group(epilog=EXIT_CODE_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbia-audit")
def cli() -> None:
    """Pin, fetch, verify and audit imaging datasets served by NBIA (TCIA)."""


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the lock (default: SPEC with .lock; the database gets .lock.db).",
)
@click.option("--upgrade", is_flag=True, help="Re-pin every series to what the archive serves now.")
@click.option(
    "--series-only",
    is_flag=True,
    help="Pin series hashes only; fetch fills in and checks the images later.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if the lock is stale (spec changed, or upstream differs).",
)
@click.option("--offline", is_flag=True, help="With --check: only compare the spec, ask no server.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Concurrent requests to the archive.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def lock(
    spec: Path,
    lock_path: Path | None,
    upgrade: bool,
    series_only: bool,
    check: bool,
    offline: bool,
    workers: int,
    quiet: bool,
) -> None:
    """Resolve SPEC (dataset.yaml) into a lock pinning every series and image."""
    from .locking import check_lock, lock_dataset
    from .spec import load_spec

    try:
        loaded = load_spec(spec)
        archive = None if (check and offline) else make_archive(loaded.server, loaded.api)
        if check:
            result = check_lock(spec, archive, lock_path=lock_path, workers=workers)
            for reason in result.reasons:
                click.echo(f"stale: {reason}")
            click.echo("lock is stale" if result.stale else "lock is up to date")
            sys.exit(ExitCode.FINDINGS if result.stale else ExitCode.CLEAN)
        assert archive is not None
        outcome = lock_dataset(
            spec,
            archive,
            lock_path=lock_path,
            upgrade=upgrade,
            series_only=series_only,
            workers=workers,
            on_progress=Progress(quiet),
        )
    except NbiaAuditError as error:
        fail(error)
    h = outcome.header
    verb = "Wrote" if outcome.written else "Unchanged:"
    click.echo(
        f"{verb} {outcome.lock_path} ({h.series_count} series, {h.image_count} images, "
        f"{_human_bytes(h.total_bytes)}; root {h.root_digest}; {outcome.requests} requests)"
    )
    for label, uids in (
        ("+", outcome.changes.added),
        ("-", outcome.changes.removed),
        ("~", outcome.changes.changed),
    ):
        for uid in uids:
            click.echo(f"  {label} series {uid}")
    if outcome.pending:
        click.echo("Upstream differs from the pins (kept; `--upgrade` takes it):")
        for label, uids in (
            ("+", outcome.pending.added),
            ("-", outcome.pending.removed),
            ("~", outcome.pending.changed),
        ):
            for uid in uids:
                click.echo(f"  {label} series {uid}")
    serious = [
        p
        for p in outcome.problems
        if p.kind in ("series-hash-mismatch", "image-count-mismatch", "empty-series-hash")
    ]
    for problem in outcome.problems:
        click.echo(
            f"archive problem: {problem.kind}: series {problem.series_uid}: {problem.detail}",
            err=True,
        )
    sys.exit(ExitCode.FINDINGS if serious else ExitCode.CLEAN)


@cli.command(epilog=EXIT_CODE_HELP)
@click.option(
    "--dir",
    "workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("nbia-audit-demo"),
    show_default=True,
    help="Where the demo writes its spec, lock and data.",
)
def demo(workdir: Path) -> None:
    """Run the whole story against the embedded NBIA emulator, and check every step."""
    from .demo import DemoStep, run_demo

    def show(step: DemoStep) -> None:
        mark = "ok  " if step.ok else "FAIL"
        click.echo(f"[{mark}] {step.title}")
        click.echo(f"       {step.detail}")

    click.echo(f"nbia-audit demo: working in {workdir.resolve()}")
    try:
        steps = run_demo(workdir, on_step=show)
    except NbiaAuditError as error:
        fail(error)
    passed = all(step.ok for step in steps)
    click.echo("Demo passed: every step behaved as expected." if passed else "Demo FAILED.")
    sys.exit(ExitCode.CLEAN if passed else ExitCode.FINDINGS)


def _register_subcommands() -> None:
    from .cli_emulator import emulator

    cli.add_command(emulator)


_register_subcommands()


def main() -> None:  # pragma: no cover - exercised through the console script
    cli()

"""``nbia-audit verify``: is this folder exactly the locked dataset?"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from nbia_audit.cli.common import (
    FILE,
    Progress,
    command,
    deliver,
    fail,
    finish_report,
    guard_output,
    quiet_option,
    report_options,
    workers_option,
)
from nbia_audit.cli.signals import interruptible
from nbia_audit.errors import NbiaAuditError
from nbia_audit.report.escaping import for_terminal
from nbia_audit.report.render import render, render_text
from nbia_audit.verify.run import verify_copy

__all__ = ["verify"]

_LEVELS = ("full", "quick", "stat")


class Fraction(click.ParamType[float]):
    """A fraction in (0, 1], written ``0.05`` or ``5%``."""

    name = "FRACTION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a fraction such as 0.05 or 5%", param, ctx)
        if not 0 < number <= 1:
            self.fail(f"{value!r} must be more than 0 and at most 1 (100%)", param, ctx)
        return number


@command()
@click.argument("lock", type=FILE)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--level",
    type=click.Choice(_LEVELS),
    default="full",
    show_default=True,
    help="full: MD5 of every file; quick: xxh3-128 against the last full pass; "
    "stat: trust unchanged stat data. New or changed files are always hashed in full.",
)
@click.option(
    "--sample",
    type=Fraction(),
    help="Hash only a seeded random FRACTION of the locked images (0.05 or 5%); "
    "every file is still checked for presence. Not with --level stat.",
)
@click.option("--seed", type=int, help="Seed for --sample (default: a fresh one, reported).")
@report_options
@workers_option(256, "Threads reading and hashing files (default: one per core).")
@click.option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="Leave out paths matching GLOB (relative path or name); repeatable.",
)
@quiet_option
@interruptible("verify")
def verify(
    lock: Path,
    directory: Path,
    level: str,
    sample: float | None,
    seed: int | None,
    fmt: str,
    output: Path | None,
    workers: int | None,
    ignore: tuple[str, ...],
    quiet: bool,
) -> None:
    """Check that DIRECTORY holds exactly the dataset pinned by LOCK (dataset.lock)."""
    guard_output(output, lock)

    if seed is not None and sample is None:
        raise click.BadOptionUsage("seed", "--seed needs --sample")
    if sample is not None and level == "stat":
        raise click.BadOptionUsage("sample", "--sample hashes a fraction; --level stat hashes none")
    try:
        with warnings.catch_warnings():
            # pydicom warns about odd headers; the report already says what matters.
            warnings.simplefilter("ignore")
            report = verify_copy(
                lock, directory, level=level, sample=sample, seed=seed, workers=workers,
                ignore=ignore, on_progress=Progress(quiet),
            )  # fmt: skip
        text = render(report, fmt)
    except NbiaAuditError as error:
        fail(error)
    deliver(text, output, findings=bool(report.findings))
    if output is not None and not quiet:
        click.echo(render_text(report).splitlines()[0] + for_terminal(f" (report: {output})"))
    finish_report(report)

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
from nbia_audit.cli.executor import DaskRun, executor_options
from nbia_audit.cli.shardopts import check_shard_options, shard_options
from nbia_audit.cli.signals import interruptible
from nbia_audit.engines.daskexec import verify_with_dask
from nbia_audit.errors import NbiaAuditError
from nbia_audit.findings import AuditReport
from nbia_audit.report.escaping import for_terminal
from nbia_audit.report.render import render, render_text
from nbia_audit.shards import Shard
from nbia_audit.verify.run import verify_copy
from nbia_audit.verify.shards import merge_verify, verify_shard

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
@shard_options("verify")
@executor_options
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
    shard: Shard | None,
    shard_dir: Path | None,
    merge_dir: Path | None,
    dask: DaskRun | None,
    quiet: bool,
) -> None:
    """Check that DIRECTORY holds exactly the dataset pinned by LOCK (dataset.lock).

    On a cluster, run `--shard K/N --shard-dir RUN` for K = 1..N (anywhere, in any order),
    then `--merge RUN`: the same verdict as one process (docs/scale.md).
    """
    guard_output(output, lock)
    check_shard_options(shard, shard_dir, merge_dir)
    if merge_dir is not None:
        _refuse_settings_with_merge()

    if seed is not None and sample is None:
        raise click.BadOptionUsage("seed", "--seed needs --sample")
    if sample is not None and level == "stat":
        raise click.BadOptionUsage("sample", "--sample hashes a fraction; --level stat hashes none")
    if shard is not None and sample is not None and seed is None:
        raise click.BadOptionUsage("seed", "--sample with --shard needs --seed (one draw for all)")
    if shard is not None and shard_dir is not None:
        if output is not None:
            raise click.BadOptionUsage("output", "a shard writes no report; --merge does")
        _run_shard(lock, directory, shard, shard_dir, level, sample, seed, workers, ignore, quiet)
        return
    try:
        with warnings.catch_warnings():
            # pydicom warns about odd headers; the report already says what matters.
            warnings.simplefilter("ignore")
            report: AuditReport
            if dask is not None:
                report = verify_with_dask(
                    lock, directory, target=dask.target, shards=dask.shards, run_dir=dask.run_dir,
                    level=level, sample=sample, seed=seed, workers=workers, ignore=ignore,
                    on_progress=Progress(quiet),
                )  # fmt: skip
            elif merge_dir is not None:
                report = merge_verify(lock, directory, merge_dir, on_progress=Progress(quiet))
            else:
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


def _refuse_settings_with_merge() -> None:
    """The merge judges with the shards' own settings: a different one given here would be
    silently ignored, so it is refused (exit 2)."""
    ctx = click.get_current_context()
    for name in ("level", "sample", "seed", "ignore", "workers"):
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
            flag = "--" + name
            raise click.BadOptionUsage(name, f"{flag} is not for --merge: the shards' own is used")


def _run_shard(
    lock: Path,
    directory: Path,
    shard: Shard,
    shard_dir: Path,
    level: str,
    sample: float | None,
    seed: int | None,
    workers: int | None,
    ignore: tuple[str, ...],
    quiet: bool,
) -> None:
    """One shard: exit 0 when its file is written (its facts are not a verdict), else 3."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = verify_shard(
                lock, directory, shard, shard_dir, level=level, sample=sample, seed=seed,
                workers=workers, ignore=ignore, on_progress=Progress(quiet),
            )  # fmt: skip
    except NbiaAuditError as error:
        fail(error)
    if not quiet:
        click.echo(
            for_terminal(
                f"verify shard {shard}: {result.files} files of its {result.series} series "
                f"checked; facts in {result.path} (then: verify LOCK DIR --merge {shard_dir})"
            )
        )

"""``nbia-audit cluster-script``: a SLURM or PBS job array that runs the shards, then the merge."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path, PurePath

import click

from nbia_audit.cli.common import FILE, FOLDER, command
from nbia_audit.engines.jobarray import SCHEDULERS, VERBS, ArrayJob, JobArrayError, array_script

__all__ = ["cluster_script"]

_LEVELS = ("full", "quick", "stat")


@command()
@click.argument("scheduler", type=click.Choice(SCHEDULERS))
@click.argument("lock", type=FILE)
@click.argument("directory", type=FOLDER)
@click.option("--verb", type=click.Choice(VERBS), required=True, help="What the shards run.")
@click.option(
    "--shards", type=click.IntRange(1, 100_000), required=True, help="Array tasks, one per shard."
)
@click.option(
    "--run-dir",
    type=FOLDER,
    required=True,
    help="Folder for the shard files and the logs, on storage every node sees.",
)
@click.option("--level", type=click.Choice(_LEVELS), help="verify: level of proof.")
@click.option("--sample", metavar="FRACTION", help="verify: hash a seeded fraction (needs --seed).")
@click.option("--seed", type=int, help="verify: the seed for --sample, the same for every shard.")
@click.option("--ignore", multiple=True, metavar="GLOB", help="verify: leave out paths.")
@click.option("--layout", metavar="LAYOUT", help="fetch: the folder layout.")
@click.option("--workers", type=click.IntRange(1), help="Threads per task (default: --cpus).")
@click.option("--time", "walltime", metavar="HH:MM:SS", help="Wall time of each job.")
@click.option("--mem", metavar="SIZE", help="Memory of each job, in the scheduler's units.")
@click.option("--cpus", type=click.IntRange(1), help="Cores of each array task.")
@click.option("--partition", metavar="NAME", help="SLURM partition or PBS queue.")
@click.option(
    "--scheduler-option",
    "scheduler_options",
    multiple=True,
    metavar="OPTION",
    help="Passed as is to sbatch/qsub for both jobs (e.g. --scheduler-option=--account=abc);"
    " repeatable.",
)
@click.option(
    "--merge-option",
    "merge_options",
    multiple=True,
    metavar="OPTION",
    help="Passed to the merge only (e.g. --merge-option=--format=json"
    " --merge-option=--output=/shared/report.json); repeatable.",
)
@click.option(
    "--nbia-audit",
    "runner",
    metavar="COMMAND",
    help="How compute nodes run nbia-audit, e.g. 'nbia-audit' or 'apptainer exec x.sif"
    " nbia-audit' (default: the Python running this command, with -m nbia_audit).",
)
@click.option("--name", default="nbia-audit", show_default=True, help="Job name prefix.")
def cluster_script(
    scheduler: str,
    lock: Path,
    directory: Path,
    verb: str,
    shards: int,
    run_dir: Path,
    level: str | None,
    sample: str | None,
    seed: int | None,
    ignore: tuple[str, ...],
    layout: str | None,
    workers: int | None,
    walltime: str | None,
    mem: str | None,
    cpus: int | None,
    partition: str | None,
    scheduler_options: tuple[str, ...],
    merge_options: tuple[str, ...],
    runner: str | None,
    name: str,
) -> None:
    """Print a SCHEDULER (slurm or pbs) script running VERB on LOCK in shards, then the merge.

    DIRECTORY is the copy (verify) or the destination (fetch). Task K of the array runs
    `nbia-audit VERB ... --shard K/N --shard-dir RUN`; a merge job held until every task has
    ended (afterany) then runs `--merge RUN`, which exits 3 if any shard is missing. Save the
    script and run it once with bash on a login node (docs/scale.md).
    """
    options = _verb_options(verb, level, sample, seed, ignore, layout, workers or cpus)
    try:
        command_words = tuple(shlex.split(runner)) if runner is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--nbia-audit'") from None
    job = ArrayJob(
        scheduler=scheduler,
        verb=verb,
        shards=shards,
        # A job starts elsewhere (PBS: in the home folder): paths as seen from here, absolute.
        lock=_absolute(lock),
        directory=_absolute(directory),
        run_dir=_absolute(run_dir),
        command=command_words or (sys.executable, "-m", "nbia_audit"),
        verb_options=options,
        time=walltime,
        mem=mem,
        cpus=cpus,
        partition=partition,
        scheduler_options=scheduler_options,
        merge_options=merge_options,
        name=name,
    )
    try:
        text = array_script(job)
    except JobArrayError as error:
        raise click.UsageError(str(error)) from None
    click.echo(text, nl=False)


def _verb_options(
    verb: str,
    level: str | None,
    sample: str | None,
    seed: int | None,
    ignore: tuple[str, ...],
    layout: str | None,
    workers: int | None,
) -> tuple[str, ...]:
    verify_only = {"--level": level, "--sample": sample, "--seed": seed, "--ignore": ignore}
    if verb == "fetch":
        for flag, value in verify_only.items():
            if value:
                raise click.BadOptionUsage(flag.lstrip("-"), f"{flag} is an option of verify")
    if verb == "verify" and layout is not None:
        raise click.BadOptionUsage("layout", "--layout is an option of fetch")
    if sample is not None and seed is None:
        # Every shard must draw the same sample: one seed for all of them.
        raise click.BadOptionUsage("sample", "--sample in shards needs --seed")
    if seed is not None and sample is None:
        raise click.BadOptionUsage("seed", "--seed needs --sample")
    words: list[str] = []
    if level is not None:
        words += ["--level", level]
    if sample is not None:
        words += ["--sample", sample, "--seed", str(seed)]
    for glob in ignore:
        words += ["--ignore", glob]
    if layout is not None:
        words += ["--layout", layout]
    if workers is not None:
        words += ["--workers", str(workers)]
    return tuple(words)


def _absolute(path: Path) -> PurePath:
    return Path(os.path.abspath(path))

"""``--executor`` and its options: where a run's work executes.

One decorator, ``executor_options``, gives ``verify`` and ``fetch`` the same options
(``--executor``, ``--scheduler``, ``--scheduler-file``, ``--shards``, ``--run-dir``) and hands the
command one value, ``dask``: ``None`` for the embedded default (threads in this process, Dask
never imported), else a ``DaskRun`` saying which cluster, how many shards and where their files
go. The executor runs the shards itself, so ``--shard``/``--shard-dir``/``--merge`` (one shard
by hand, docs/scale.md) are refused beside it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from nbia_audit.engines.daskexec import DaskTarget

__all__ = ["DaskRun", "executor_options"]

EXECUTORS = ("embedded", "dask")
# The options that run or merge one shard by hand (cli/shardopts.py), by parameter name.
_BY_HAND = {"shard": "--shard", "shard_dir": "--shard-dir", "merge_dir": "--merge"}


@dataclass(frozen=True, slots=True)
class DaskRun:
    """``--executor dask``: the cluster (``target``) and the number of shards (None: one per
    worker thread)."""

    target: DaskTarget
    shards: int | None
    run_dir: Path | None


def executor_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the executor options to a command; it receives them as one ``dask`` argument."""

    @functools.wraps(func)
    def command(
        *args: Any,
        executor: str,
        scheduler: str | None,
        scheduler_file: Path | None,
        shards: int | None,
        run_dir: Path | None,
        **kwargs: Any,
    ) -> Any:
        dask = _dask_run(executor, scheduler, scheduler_file, shards, run_dir)
        if dask is not None:
            for name, flag in _BY_HAND.items():
                if kwargs.get(name) is not None:
                    raise click.BadOptionUsage(
                        name, f"{flag} is for one shard by hand; --executor dask runs them all"
                    )
            if kwargs.get("series_uids"):
                raise click.BadOptionUsage(
                    "series", "--series is not for --executor dask: the split gives each shard"
                )
        return func(*args, dask=dask, **kwargs)

    options = [
        click.option(
            "--executor",
            type=click.Choice(EXECUTORS),
            default="embedded",
            show_default=True,
            help="embedded: threads in this process. dask: one task per shard on a Dask"
            " cluster (pip install 'nbia-audit[dask]'; docs/scale.md).",
        ),
        click.option(
            "--scheduler",
            metavar="ADDRESS",
            help="dask: the scheduler's address (default: a local cluster for this run).",
        ),
        click.option(
            "--scheduler-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="dask: the scheduler's file, as dask-jobqueue or dask-scheduler writes it.",
        ),
        click.option(
            "--shards",
            type=click.IntRange(1, 100_000),
            help="dask: shards of whole series, one task each (default: one per worker thread).",
        ),
        click.option(
            "--run-dir",
            type=click.Path(path_type=Path, file_okay=False),
            metavar="RUN",
            help="dask: folder for the shards' files, on storage every worker sees (default: a"
            " temporary folder; needed with a scheduler).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _dask_run(
    executor: str,
    scheduler: str | None,
    scheduler_file: Path | None,
    shards: int | None,
    run_dir: Path | None,
) -> DaskRun | None:
    given = {
        "--scheduler": scheduler,
        "--scheduler-file": scheduler_file,
        "--shards": shards,
        "--run-dir": run_dir,
    }
    if executor != "dask":
        for flag, value in given.items():
            if value is not None:
                raise click.BadOptionUsage(flag.lstrip("-"), f"{flag} needs --executor dask")
        return None
    if scheduler is not None and scheduler_file is not None:
        raise click.BadOptionUsage("scheduler", "give --scheduler or --scheduler-file, not both")
    target = DaskTarget(
        address=scheduler, scheduler_file=str(scheduler_file) if scheduler_file else None
    )
    return DaskRun(target=target, shards=shards, run_dir=run_dir)

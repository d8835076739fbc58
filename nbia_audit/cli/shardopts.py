"""The shard options `verify` and `fetch` share: `--shard K/N`, `--shard-dir RUN`, `--merge RUN`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nbia_audit.shards import Shard

__all__ = ["ShardType", "check_shard_options", "shard_options"]


class ShardType(click.ParamType[Shard]):
    """``K/N``: shard K of N, 1-based."""

    name = "K/N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Shard:
        if isinstance(value, Shard):
            return value
        try:
            return Shard.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def shard_options(verb: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--shard``, ``--shard-dir`` and ``--merge`` for ``verb``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--merge",
            "merge_dir",
            type=click.Path(path_type=Path, file_okay=False),
            metavar="RUN",
            help=f"Merge the shards' files in RUN into one {verb} result; exit 3 listing "
            "missing or foreign shards.",
        )(func)
        func = click.option(
            "--shard-dir",
            type=click.Path(path_type=Path, file_okay=False),
            metavar="RUN",
            help="Folder (shared by every shard) where --shard writes its file.",
        )(func)
        return click.option(
            "--shard",
            type=ShardType(),
            help=f"{verb.capitalize()} only shard K of N (whole series, balanced by bytes), "
            "writing its file to --shard-dir; then run --merge.",
        )(func)

    return decorate


def check_shard_options(shard: Shard | None, shard_dir: Path | None, merge: Path | None) -> None:
    """Refuse combinations that cannot mean anything (exit 2)."""
    if shard is not None and shard_dir is None:
        raise click.BadOptionUsage("shard", "--shard needs --shard-dir RUN (where its file goes)")
    if shard_dir is not None and shard is None:
        raise click.BadOptionUsage("shard_dir", "--shard-dir goes with --shard K/N")
    if merge is not None and shard is not None:
        raise click.BadOptionUsage("merge", "--merge runs after the shards, not with --shard")

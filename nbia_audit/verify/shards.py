"""``verify`` split into shards and merged: the same verdict as one process.

Every shard walks the whole tree (a listing is cheap) and reads only the files it owns: a
file belongs to the shard of its series when the copy's state records know its series, else
to :func:`~nbia_audit.shards.shard_of_path`. A shard never writes the copy's state database;
its facts and records travel in its file in the run folder, written under a temporary name
and renamed when complete. The merge refuses foreign shards, stops (exit 3) on missing ones,
unions the facts and judges them with the one judge, then writes the records (single writer).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime

from nbia_audit.findings import AuditReport
from nbia_audit.progress import ProgressCallback
from nbia_audit.shards import Shard, ShardResult

__all__ = ["ShardResult", "merge_verify", "verify_shard"]


def verify_shard(
    lock_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    shard: Shard,
    shard_dir: str | os.PathLike[str],
    *,
    level: str = "full",
    sample: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
) -> ShardResult:
    """Check the files of ``root`` that ``shard`` owns; write its facts to ``shard_dir``.

    Raises:
        ValueError: a bad level, fraction or worker count; ``sample`` without ``seed``.
        LockNotFound, StoreError: the lock or the copy cannot be read, or the shard's file
            cannot be written.
    """
    raise NotImplementedError  # stub: interface I4, filled in by H4


def merge_verify(
    lock_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    shard_dir: str | os.PathLike[str],
    *,
    on_progress: ProgressCallback | None = None,
    now: Callable[[], datetime] | None = None,
) -> AuditReport:
    """Judge the union of every shard's facts in ``shard_dir``: one run's report.

    Raises:
        ShardsIncomplete: a shard is missing, or a file in ``shard_dir`` is from another run
            (another lock, copy, level, sample, seed, ignore patterns or N).
        LockNotFound, StoreError: the lock or the copy cannot be read.
    """
    raise NotImplementedError  # stub: interface I4, filled in by H4

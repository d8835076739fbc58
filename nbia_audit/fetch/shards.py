"""``fetch`` split into shards and merged.

A shard fetches only its own series (:func:`~nbia_audit.shards.assign_series`) and never
writes the destination's state database or the lock database: the records of what it placed
travel in its file in the run folder, written under a temporary name and renamed when
complete. The merge refuses foreign shards, stops (exit 3) on missing ones, writes every
shard's records (one writer) and reports the union.
"""

from __future__ import annotations

import os
from typing import Any

from nbia_audit.fetch.run import FetchReport
from nbia_audit.shards import Shard, ShardResult

__all__ = ["ShardResult", "fetch_shard", "merge_fetch"]


def fetch_shard(
    lock_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    shard: Shard,
    shard_dir: str | os.PathLike[str],
    **options: Any,
) -> ShardResult:
    """Fetch the series ``shard`` owns into ``dest``; write its outcomes to ``shard_dir``.

    ``options`` are those of :func:`~nbia_audit.fetch.run.fetch_dataset` (``archive``
    among them), except ``series``.
    """
    raise NotImplementedError  # stub: interface I4, filled in by H4


def merge_fetch(
    lock_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    shard_dir: str | os.PathLike[str],
) -> FetchReport:
    """Write every shard's records into the destination's state; report the union.

    Raises:
        ShardsIncomplete: a shard is missing, or a file in ``shard_dir`` is from another run.
    """
    raise NotImplementedError  # stub: interface I4, filled in by H4

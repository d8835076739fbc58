"""``run_shards``: one Dask task per shard, a window at a time, failures kept as values.

On a real LocalCluster of 2 worker processes (one thread each); the tasks here are small
module-level functions, so what is tested is the runner itself (tests/engines/test_dask.py runs
the verbs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.engines.daskexec import run_shards
from nbia_audit.shards import Shard, ShardResult

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as running:
        yield running


def _result(shard: Shard) -> ShardResult:
    return ShardResult("verify", shard, Path(f"/r/{shard.index}"), shard.index, 0, 0.0)


def _fails_on_two(shard: Shard) -> ShardResult:
    if shard.index == 2:
        raise OSError("No space left on device")
    return _result(shard)


def test_every_shard_runs_once_through_a_small_window(cluster: distributed.LocalCluster) -> None:
    seen: list[tuple[int, int]] = []
    with distributed.Client(cluster) as client:
        results, failures = run_shards(
            client, _result, 7, name="t", window=2, on_progress=lambda _s, d, t: seen.append((d, t))
        )
    assert [r.shard for r in results] == [Shard(k, 7) for k in range(1, 8)]
    assert not failures
    assert seen == [(k, 7) for k in range(1, 8)]


def test_a_failed_shard_is_reported_not_dropped(cluster: distributed.LocalCluster) -> None:
    with distributed.Client(cluster) as client:
        results, failures = run_shards(client, _fails_on_two, 3, name="t", window=8)
    assert [r.shard.index for r in results] == [1, 3]
    assert [(f.shard, f.reason) for f in failures] == [
        (Shard(2, 3), "OSError: No space left on device")
    ]

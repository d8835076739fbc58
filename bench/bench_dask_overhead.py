"""Benchmark what the Dask executor costs per shard, beyond the shard's own work.

On a LocalCluster of one worker process with one thread (so that both ways run one shard at a
time, and the difference is Dask's, not parallelism), the same N shards run two ways:

* **no-op shards**: ``run_shards`` with a task that does nothing, against the same N calls in
  this process: the pure cost of a Dask task (submit, schedule, pickle the spec and result,
  gather) per shard;
* **tiny verify shards**: ``verify --executor dask --shards N`` (``verify_with_dask``) of a
  small fetched copy, against ``verify_shard`` for K = 1..N then ``merge_verify`` in this
  process: the same shard work, so the difference per shard is Dask's overhead on real tasks
  (the verify shards walk the tree each, so they are not free even in process).

The cluster's start-up (paid once per run with the local cluster, never with a running
scheduler) is reported on its own. Usage:

    python bench/bench_dask_overhead.py                 # N = 8, 32, 128
    python bench/bench_dask_overhead.py --shards 16 64 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import row, timed

from nbia_audit.client import NbiaClient
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.engines.daskexec import DaskTarget, run_shards, verify_with_dask
from nbia_audit.fetch.run import fetch_dataset
from nbia_audit.lock.api import lock_spec
from nbia_audit.shards import Shard, ShardResult
from nbia_audit.verify.shards import merge_verify, verify_shard

SPEC = CorpusSpec(seed=3, collections=2, patients=4, studies=1, series=4, images=3)


def noop(shard: Shard) -> ShardResult:
    return ShardResult("verify", shard, Path("/dev/null"), 0, 0, 0.0)


def tiny_copy(folder: Path, emu: Emulator) -> Path:
    spec = folder / "dataset.yaml"
    names = "".join(f"  - collection: {c.name}\n" for c in emu.corpus.collections)
    spec.write_text(f"name: bench\nserver: {emu.base_url}\nselect:\n{names}", encoding="utf-8")
    lock = lock_spec(spec, emu.base_url).lock_path
    with NbiaClient(emu.base_url) as client:
        fetch_dataset(lock, folder / "copy", client)  # type: ignore[arg-type]
    return lock


def in_process(lock: Path, root: Path, run: Path, count: int) -> None:
    for index in range(1, count + 1):
        verify_shard(lock, root, Shard(index, count), run)
    merge_verify(lock, root, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args()

    # lazy: the benchmark needs the dask extra, which the rest of bench/ does not
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    started = time.perf_counter() - start
    print(row(f"LocalCluster({args.workers} processes) start", f"{started:.2f} s"))
    print(row("shards", "in process", "through Dask", "overhead/shard"))
    try:
        for count in args.shards:
            _, local = timed(lambda c=count: [noop(Shard(k, c)) for k in range(1, c + 1)])
            _, remote = timed(
                lambda c=count: run_shards(client, noop, c, name="bench", window=2 * args.workers)
            )
            per = (remote - local) / count * 1000
            print(row(f"no-op x {count}", f"{local:.3f} s", f"{remote:.3f} s", f"{per:.1f} ms"))
        with tempfile.TemporaryDirectory() as tmp, Emulator.from_spec(SPEC) as emu:
            folder = Path(tmp)
            lock = tiny_copy(folder, emu)
            root = folder / "copy"
            target = DaskTarget(address=cluster.scheduler_address)
            for count in args.shards:
                run = folder / f"run-{count}"
                _, local = timed(lambda c=count, r=run: in_process(lock, root, r, c))
                _, remote = timed(
                    lambda c=count, r=run: verify_with_dask(
                        lock, root, target=target, shards=c, run_dir=r
                    )
                )
                per = (remote - local) / count * 1000
                print(
                    row(f"verify x {count}", f"{local:.3f} s", f"{remote:.3f} s", f"{per:.1f} ms")
                )
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()

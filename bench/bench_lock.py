"""Benchmark `lock`: concurrent resolution against a one-request-at-a-time baseline.

Locks a spec of N series / M images from the emulator (in its own process) with a fixed
latency injected into every request, once with the default concurrency and once with a
single worker (the baseline), in the same run, and prints request counts, wall times and
their ratio. Usage:

    python bench/bench_lock.py                      # 1,000 series / 20,000 images, 20 ms
    python bench/bench_lock.py --patients 5         # a quick smoke run
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import emulator_process, row, timed

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.emulator.faults import Fault
from nbia_audit.emulator.remote import RemoteEmulator
from nbia_audit.lock.run import LockResult, lock_dataset


def lock_once(url: str, workdir: Path, collections: list[str], workers: int) -> LockResult:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    spec = workdir / "dataset.yaml"
    select = "".join(f"  - collection: {c}\n" for c in collections)
    spec.write_text(f"name: bench\nserver: {url}\nselect:\n{select}")
    with NbiaClient(url) as client:
        return lock_dataset(spec, ArchiveView(client), workers=workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--collections", type=int, default=2)
    parser.add_argument("--patients", type=int, default=50, help="per collection")
    parser.add_argument("--studies", type=int, default=2, help="per patient")
    parser.add_argument("--series", type=int, default=5, help="per study")
    parser.add_argument("--images", type=int, default=20, help="per series")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds per request")
    parser.add_argument("--workers", type=int, default=8, help="as `lock --workers`")
    args = parser.parse_args()
    shape = [
        "--collections",
        str(args.collections),
        "--patients",
        str(args.patients),
        "--studies",
        str(args.studies),
        "--series",
        str(args.series),
        "--images",
        str(args.images),
        "--seed",
        "1",
    ]
    with emulator_process(shape) as url, tempfile.TemporaryDirectory() as tmp:
        remote = RemoteEmulator(url)
        with NbiaClient(url) as client:
            collections = client.collections()
        remote.add_fault(Fault("latency", delay=args.latency))
        fast, fast_s = timed(lambda: lock_once(url, Path(tmp) / "a", collections, args.workers))
        base, base_s = timed(lambda: lock_once(url, Path(tmp) / "b", collections, 1))
        assert fast.header.root_digest == base.header.root_digest, "both runs must pin the same"
    h = fast.header
    print(
        f"lock: {h.series_count} series, {h.image_count} images, {args.latency * 1000:.0f} ms "
        "injected latency per request"
    )
    print(row("", "requests", "wall (s)", "req/s"))
    print(
        row("baseline (1 worker)", base.requests, f"{base_s:.1f}", f"{base.requests / base_s:.0f}")
    )
    print(
        row(
            f"nbia-audit lock ({args.workers} workers)",
            fast.requests,
            f"{fast_s:.1f}",
            f"{fast.requests / fast_s:.0f}",
        )
    )
    print(f"speed-up: {base_s / fast_s:.1f}x (aim: at least 6x)")


if __name__ == "__main__":
    main()

"""Benchmark `fetch`: verified download against curl + unzip + md5sum of the same series.

The emulator runs in its own process (`nbia-audit emulator serve`) with images of about
512 KiB. Both pipelines fetch every series of the lock over loopback, measured in the same
run:

* baseline: per series `curl -o s.zip URL && unzip -q s.zip -d s/ && md5sum s/*`, two series
  at a time (the same concurrency as `fetch --workers 2`); it checks nothing;
* nbia-audit: `nbia-audit fetch LOCK --dest DIR --workers 2 -q` as a subprocess (stream,
  check every image's MD5 against the CSV and the lock, read every header, check counts and
  the series hash, fsync, rename, record), whose peak RSS is read with ``os.wait4``.

Usage:

    python bench/bench_fetch.py                      # 2,048 images x 512 KiB = 1.07 GB, 3 rounds
    python bench/bench_fetch.py --series 1 --images 8 --repeat 1   # a quick smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import emulator_process, row

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.lock.run import lock_dataset
from nbia_audit.store.database import LockDatabase

FETCH = [sys.executable, "-c", "from nbia_audit.cli.fetch import fetch; fetch()"]


def baseline_one(url: str, series_uid: str, workdir: Path) -> None:
    """curl + unzip + md5sum of one series, as a user would script it."""
    zip_path, folder = workdir / f"{series_uid}.zip", workdir / series_uid
    script = (
        f'curl --silent --show-error --fail -o "{zip_path}" '
        f'"{url}/v4/getImageWithMD5Hash?SeriesInstanceUID={series_uid}" && '
        f'unzip -q "{zip_path}" -d "{folder}" && md5sum "{folder}"/*.dcm > "{folder}.md5"'
    )
    subprocess.run(["bash", "-c", script], check=True)


def run_baseline(url: str, series: list[str], workdir: Path, parallel: int) -> float:
    workdir.mkdir(parents=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda uid: baseline_one(url, uid, workdir), series))
    return time.perf_counter() - start


def run_fetch(lock: Path, dest: Path, workers: int) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of `nbia-audit fetch` in its own process."""
    args = [*FETCH, str(lock), "--dest", str(dest), "--workers", str(workers), "-q"]
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"nbia-audit fetch failed with exit code {process.returncode}")
    return seconds, usage.ru_maxrss * 1024  # Linux reports KiB


def make_lock(url: str, workdir: Path) -> tuple[Path, list[str], int, int]:
    with NbiaClient(url) as client:
        collections = client.collections()
        spec = workdir / "dataset.yaml"
        select = "".join(f"  - collection: {c}\n" for c in collections)
        spec.write_text(f"name: bench\nserver: {url}\nselect:\n{select}")
        result = lock_dataset(spec, ArchiveView(client))
    with LockDatabase(result.lock_path.with_name(result.lock_path.name + ".db")) as db:
        series = [s.series_uid for s in db.series()]
    return result.lock_path, series, result.header.image_count, result.header.total_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--collections", type=int, default=1)
    parser.add_argument("--patients", type=int, default=4, help="per collection")
    parser.add_argument("--studies", type=int, default=2, help="per patient")
    parser.add_argument("--series", type=int, default=4, help="per study")
    parser.add_argument("--images", type=int, default=64, help="per series")
    parser.add_argument("--image-bytes", type=int, default=512 * 1024)
    parser.add_argument("--workers", type=int, default=2, help="fetch --workers")
    parser.add_argument("--parallel", type=int, default=2, help="baseline series at a time")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    args = parser.parse_args()
    shape = ["--seed", "1", "--image-bytes", str(args.image_bytes)]
    for name in ("collections", "patients", "studies", "series", "images"):
        shape += [f"--{name}", str(getattr(args, name))]
    planned = (
        args.collections * args.patients * args.studies * args.series * args.images
    ) * args.image_bytes
    root = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=args.workdir))
    free = shutil.disk_usage(root).free
    if free < 2.5 * planned + 500e6:
        raise SystemExit(f"needs {2.5 * planned / 1e9:.1f} GB free in {root}, has {free / 1e9:.1f}")
    base_times, fetch_times, peaks = [], [], []
    try:
        with emulator_process(shape) as url:
            lock, series, images, total = make_lock(url, root)
            for round_number in range(args.repeat):
                # Alternate which pipeline goes first: the machine is shared and noisy.
                order = ("baseline", "fetch") if round_number % 2 == 0 else ("fetch", "baseline")
                for which in order:
                    if which == "baseline":
                        base_times.append(run_baseline(url, series, root / "b", args.parallel))
                        shutil.rmtree(root / "b")
                        continue
                    seconds, peak = run_fetch(lock, root / "data", args.workers)
                    placed = sum(1 for _ in (root / "data").rglob("*.dcm"))
                    assert placed == images, f"fetch placed {placed} of {images} images"
                    shutil.rmtree(root / "data")
                    fetch_times.append(seconds)
                    peaks.append(peak)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base_s, fetch_s, peak = (
        statistics.median(base_times),
        statistics.median(fetch_times),
        max(peaks),
    )
    mb = total / 1e6
    print(
        f"fetch: {len(series)} series, {images} images, {mb:.0f} MB on loopback; "
        f"median of {args.repeat} alternating rounds"
    )
    print(row("", "wall (s)", "MB/s", "peak RSS"))
    print(
        row(
            f"curl+unzip+md5sum ({args.parallel} at a time)",
            f"{base_s:.1f}",
            f"{mb / base_s:.0f}",
            "-",
        )
    )
    print(
        row(
            f"nbia-audit fetch ({args.workers} workers)",
            f"{fetch_s:.1f}",
            f"{mb / fetch_s:.0f}",
            f"{peak / 1e6:.0f} MB",
        )
    )
    print(f"throughput ratio: {base_s / fetch_s:.2f}x of the baseline (aim: at least 0.8x)")
    print(f"peak memory: {peak / 1e6:.0f} MB (aim: under 200 MB)")


if __name__ == "__main__":
    main()

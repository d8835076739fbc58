"""Benchmark `drift`: requests and wall time of the hash-tree descent against the naive check.

Locks N series over M patients (images pinned) from the emulator in its own process, then,
with a fixed latency injected into every request, runs three upstream states: no change, one
changed image, ten changed series (one image each, in ten patients). Each state is checked by
`drift` (normal: one live hash per patient; --fast: one cached hash per collection, after the
archive's nightly job) and by the naive approach (one getMD5Hierarchy per locked series, same
worker count), all in the same run. Requests are counted by the emulator (HTTP requests as
the server saw them). Usage:

    python bench/bench_drift.py                  # 1,000 series over 100 patients, 20 ms
    python bench/bench_drift.py --patients 5     # a quick smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import emulator_process, row, timed

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.drift.run import check_drift, read_lock
from nbia_audit.emulator.faults import Fault
from nbia_audit.emulator.remote import RemoteEmulator
from nbia_audit.findings import AuditReport
from nbia_audit.lock.run import lock_dataset


def make_lock(url: str, workdir: Path, collections: list[str]) -> Path:
    spec = workdir / "dataset.yaml"
    select = "".join(f"  - collection: {c}\n" for c in collections)
    spec.write_text(f"name: bench\nserver: {url}\nselect:\n{select}", encoding="utf-8")
    with NbiaClient(url) as client:
        return lock_dataset(spec, ArchiveView(client), workers=8).lock_path


def naive(url: str, lock: Path, workers: int) -> int:
    """One series hash per locked series; returns how many differ."""
    series = read_lock(lock).series
    with NbiaClient(url) as client, ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda s: client.md5_hierarchy(series_uid=s.series_uid), series))
    return sum(1 for s, a in zip(series, answers, strict=True) if a != s.series_hash)


def drift(url: str, lock: Path, fast: bool, workers: int) -> AuditReport:
    with NbiaClient(url) as client:
        return check_drift(lock, ArchiveView(client), fast=fast, workers=workers)


def measure(remote: RemoteEmulator, fn: Any) -> tuple[Any, int, float]:
    remote.requests(clear=True)
    result, seconds = timed(fn)
    return result, len(remote.requests()), seconds


def change_images(remote: RemoteEmulator, count: int) -> None:
    """Replace one image in each of ``count`` series, in ``count`` different patients."""
    seen: set[tuple[str, str]] = set()
    for series in remote.series():
        place = (series["collection"], series["patient_id"])
        if place in seen or not series["images"]:
            continue
        seen.add(place)
        remote.mutate("replace_image", sop_uid=series["images"][0]["sop_uid"])
        if len(seen) == count:
            break
    remote.run_nightly_job()  # the archive's nightly collection-hash job (protocol §1.3)


def run_state(label: str, url: str, remote: RemoteEmulator, lock: Path, args: Any) -> list[str]:
    lines = []
    normal, n_req, n_s = measure(remote, lambda: drift(url, lock, False, args.workers))
    fast, f_req, f_s = measure(remote, lambda: drift(url, lock, True, args.workers))
    changed, b_req, b_s = measure(remote, lambda: naive(url, lock, args.workers))
    assert normal.complete and fast.complete
    assert len(normal.findings) == len(fast.findings) == changed, (normal.findings, changed)
    lines.append(f"{label}: {len(normal.findings)} finding(s); naive finds {changed} series")
    lines.append(row("  naive (1 hash per series)", b_req, f"{b_s:.2f}", "1.0x", "1.0x"))
    for name, req, sec in (("  drift", n_req, n_s), ("  drift --fast", f_req, f_s)):
        lines.append(row(name, req, f"{sec:.2f}", f"{b_req / req:.1f}x", f"{b_s / sec:.1f}x"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--collections", type=int, default=2)
    parser.add_argument("--patients", type=int, default=50, help="per collection")
    parser.add_argument("--studies", type=int, default=2, help="per patient")
    parser.add_argument("--series", type=int, default=5, help="per study")
    parser.add_argument("--images", type=int, default=4, help="per series")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds per request")
    parser.add_argument("--workers", type=int, default=8, help="as `drift --workers`")
    args = parser.parse_args()
    shape = [f"--{k}={getattr(args, k)}" for k in ("collections", "patients", "studies")]
    shape += [f"--series={args.series}", f"--images={args.images}", "--seed=1"]
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Each state gets a fresh emulator (same seed, so the same archive and the same lock
        # applies): its 100-minute collection-hash cache is cold, as a day after a change.
        for label, changes in (
            ("no change", 0),
            ("one changed image", 1),
            ("ten changed series", 10),
        ):
            with emulator_process(shape) as url:
                remote = RemoteEmulator(url)
                if not lines:
                    lines = header_lines(url, Path(tmp), args)
                lock = Path(tmp) / "dataset.lock"
                if changes:
                    change_images(remote, changes)
                remote.add_fault(Fault("latency", delay=args.latency))
                lines += run_state(label, url, remote, lock, args)
    print("\n".join(lines))


def header_lines(url: str, workdir: Path, args: Any) -> list[str]:
    with NbiaClient(url) as client:
        collections = client.collections()
    lock, lock_s = timed(lambda: make_lock(url, workdir, collections))
    header = read_lock(lock).header
    return [
        f"drift: {header.series_count} series, {header.image_count} images pinned, "
        f"{args.patients * args.collections} patients, {len(collections)} collections; "
        f"{args.latency * 1000:.0f} ms injected latency per request, {args.workers} workers "
        f"(lock made in {lock_s:.1f} s without latency)",
        row("", "requests", "wall (s)", "fewer requests", "faster"),
    ]


if __name__ == "__main__":
    main()

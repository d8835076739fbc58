"""Benchmark `lock --series-only` at scale: requests/s against the ideal of workers / latency.

Issue 14 asks how fast a series-only lock of an NLST-sized selection runs against a remote
archive. The emulator serves N series (2 collections x 50 patients x 2 studies x 500
series = 100,000 by default, one image each: a series-only lock never asks for images) from
its own process, with a fixed latency injected into every request. ``nbia-audit lock SPEC
--series-only --workers W -q`` runs as a child; the parent reads its wall time and its own
peak RSS (``os.wait4``), and the emulator's request count from its control API.

The ideal is what the latency alone allows: W requests in flight all the time, so
``requests x latency / W`` seconds, or ``W / latency`` requests per second (400/s for 8
workers at 20 ms). Measured in the same run, as the baseline of what this machine can do
at all: the same lock with no latency injected (the emulator and the client on the same
cores: the rate neither can exceed whatever the latency). Usage:

    nice -n 19 python bench/bench_lock_latency.py                    # 100,000 series, 20 ms
    python bench/bench_lock_latency.py --patients 2 --series 50      # 400 series: a smoke run

The emulator's own start (generating the corpus) and peak RSS are printed too: it holds
every series and image row in memory, so it bounds how large a selection can be served.
The shape has few, large studies because the emulator computes a study's or a patient's
hash by scanning every series (``hierarchy._visible_authorized``), once per study and per
patient at start (the nightly job) and again for the lock's node hashes: O((studies +
patients) x series). NLST's shape (about 73 k studies of 2.8 series) would cost the emulator
hours at 100 k series; the lock's own requests are the same bar about one per study and
patient (one ``getMD5Hierarchy`` per series dominates).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import row

from nbia_audit.emulator.faults import Fault
from nbia_audit.emulator.remote import RemoteEmulator


@dataclass(frozen=True, slots=True)
class LockRun:
    exit_code: int
    wall: float  # seconds
    peak_mb: float  # the lock process's own peak RSS, 10^6 bytes
    requests: int  # served by the emulator during the run
    series: int  # series in the lock written
    stderr_tail: str


def vm_hwm_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM), 10^6 bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit("no VmHWM in /proc: this benchmark needs Linux")


def lock_once(
    url: str, remote: RemoteEmulator, collections: list[str], workdir: Path, workers: int
) -> LockRun:
    """One ``lock --series-only`` of every collection, as a child process."""
    workdir.mkdir(parents=True)
    spec = workdir / "dataset.yaml"
    select = "".join(f"  - collection: {c}\n" for c in collections)
    spec.write_text(f"name: bench\nserver: {url}\nselect:\n{select}")
    before = int(remote.state()["request_count"])
    command = [sys.executable, "-m", "nbia_audit", "lock", str(spec), "--series-only",
               "--workers", str(workers), "-q"]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").strip().splitlines()
    requests = int(remote.state()["request_count"]) - before
    lock = spec.with_suffix(".lock")
    found = (
        re.search(r"^series-count = (\d+)$", lock.read_text("utf-8"), re.M)
        if lock.is_file()
        else None
    )
    series = int(found.group(1)) if found else 0
    return LockRun(proc.returncode, wall, usage.ru_maxrss * 1024 / 1e6, requests, series,
                   lines[-1] if lines else "")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--collections", type=int, default=2)
    parser.add_argument("--patients", type=int, default=50, help="per collection")
    parser.add_argument("--studies", type=int, default=2, help="per patient")
    parser.add_argument("--series", type=int, default=500, help="per study")
    parser.add_argument("--images", type=int, default=1, help="per series")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds per request")
    parser.add_argument("--workers", type=int, default=8, help="as `lock --workers`")
    parser.add_argument(
        "--skip-baseline", action="store_true", help="do not measure the no-latency lock"
    )
    args = parser.parse_args()
    shape = ["--seed", "1", "--collections", str(args.collections), "--patients",
             str(args.patients), "--studies", str(args.studies), "--series", str(args.series),
             "--images", str(args.images)]  # fmt: skip
    expected = args.collections * args.patients * args.studies * args.series
    command = [sys.executable, "-m", "nbia_audit", "emulator", "serve", *shape]
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the emulator did not start: {url!r}")
        startup = time.perf_counter() - started
        print(f"emulator: {expected:,} series x {args.images} image(s) generated and serving"
              f" in {startup:.1f} s, {vm_hwm_mb(server.pid):.0f} MB", file=sys.stderr,
              flush=True)  # fmt: skip
        remote = RemoteEmulator(url, timeout=120)
        # What it serves: the generator's UIDs can coincide (their parts are joined without
        # a separator: patient 1 study 1 series 10 is patient 11 study 1 series 0), and a
        # coinciding series replaces the earlier one, so a few percent fewer than the shape.
        served = int(remote.state()["series"])
        from nbia_audit.client import NbiaClient  # only to list the collections

        with NbiaClient(url) as client:
            collections = client.collections()
        with tempfile.TemporaryDirectory() as tmp:
            runs: list[tuple[str, float, LockRun]] = []
            if not args.skip_baseline:
                run = lock_once(url, remote, collections, Path(tmp) / "unloaded", args.workers)
                runs.append(("no latency injected (baseline)", 0.0, run))
                print(f"  baseline: {run.wall:.1f} s", file=sys.stderr, flush=True)
            remote.add_fault(Fault("latency", delay=args.latency))
            run = lock_once(url, remote, collections, Path(tmp) / "latency", args.workers)
            runs.append((f"{args.latency * 1000:.0f} ms per request", args.latency, run))
        emulator_mb = vm_hwm_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)

    print(f"lock --series-only --workers {args.workers}: {served:,} series served"
          f" ({expected:,} generated);"
          f" emulator started in {startup:.1f} s, its peak RSS {emulator_mb:.0f} MB")  # fmt: skip
    print(row("", "exit", "series", "requests", "wall (s)", "req/s", "ideal req/s",
              "x ideal", "peak RSS (MB)"))  # fmt: skip
    wrong = []
    for label, latency, run in runs:
        ideal = f"{args.workers / latency:.0f}" if latency else ""
        ratio = f"{run.requests / run.wall / (args.workers / latency):.2f}" if latency else ""
        print(row(label, run.exit_code, f"{run.series:,}", f"{run.requests:,}",
                  f"{run.wall:.1f}", f"{run.requests / run.wall:.0f}", ideal, ratio,
                  f"{run.peak_mb:.0f}"))  # fmt: skip
        if run.exit_code != 0 or run.series != served:
            wrong.append(f"{label}: exit {run.exit_code}, {run.series} series: {run.stderr_tail}")
    _, latency, run = runs[-1]
    ideal_s = run.requests * latency / args.workers
    print(f"with latency: {run.wall:.1f} s against the ideal {run.requests:,} x"
          f" {latency * 1000:.0f} ms / {args.workers} = {ideal_s:.1f} s"
          f" ({run.wall / ideal_s:.2f}x the ideal time)")  # fmt: skip
    print(f"timestamp: {time.strftime('%Y-%m-%d %H:%M:%S')}")
    if wrong:
        raise SystemExit("not measured:\n" + "\n".join(wrong))


if __name__ == "__main__":
    main()

"""Benchmark shards: N shard processes plus the merge against one process, same corpus, same run.

Issue 14 splits ``verify`` into shards of whole series that run as separate processes (on one
machine or many) and a merge that judges their union. The split must not cost much: the
total work of N shards plus the merge should be within 10 % of one process doing it all,
and the merge (the one step that cannot be spread) under 5 % of the run.

The corpus is the verify benchmark's (``bench_verify.build`` and ``bench_verify.lock``): real
DICOM from the emulator's corpus builder, 20,648 files of about 0.5 MB (10.86 GB) in the
fetch layout, locked from an emulator in its own process; reused when ``--dir`` holds it.
Every file is read once first (warm page cache). Then, interleaved and each from no local
state (``DIR/.nbia-audit`` removed, so every run hashes every byte: ``--level full``):

* one process: ``nbia-audit verify LOCK DIR --level full -q`` (measured first and last; the
  mean is the baseline, the spread says how noisy the machine was);
* for N in ``--shards`` (2 and 4): ``verify LOCK DIR --level full --shard K/N --shard-dir RUN``
  for K = 1..N, **one after another**, then ``verify LOCK DIR --merge RUN``;
* the same N shards **two at a time**, then the merge.

Each process's wall time and CPU time (user + system, from ``os.wait4``) are recorded.
Printed: total CPU of shards + merge against one process (the work ratio; aim: within 10 %),
their summed wall against one process's wall, the elapsed time of the two-at-a-time run,
and the merge's wall as a share of the sharded run (aim: under 5 %). Every run must end
clean (exit 0) with the same verdict: the merge's output is compared with one process's.

Until the shard options exist (``verify --help`` lists no ``--shard``) only the one-process
baseline is measured, and the script says so and exits 1. Usage:

    nice -n 19 python bench/bench_shards.py --dir /tmp/nbia-bench-verify        # 20,648 files
    python bench/bench_shards.py --dir /tmp/bs --patients 5 --shards 2          # a smoke run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bench_verify
from bench_memory import own_peak_mb

CLI = (sys.executable, "-m", "nbia_audit")
STATE_FOLDER = ".nbia-audit"
WORK_BOUND = 0.10  # shards + merge within 10 % of one process's work
MERGE_BOUND = 0.05  # the merge under 5 % of the sharded run


@dataclass(frozen=True, slots=True)
class Proc:
    """One finished child: exit code, wall and CPU seconds, peak RSS, its output."""

    exit_code: int
    wall: float
    cpu: float  # user + system
    peak_mb: float
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class Sharded:
    """N shards (one after another, or two at a time) and their merge."""

    count: int
    parallel: int
    shards: tuple[Proc, ...]
    merge: Proc
    elapsed: float  # first shard's start to the merge's end

    @property
    def cpu(self) -> float:
        return sum(p.cpu for p in self.shards) + self.merge.cpu

    @property
    def wall_sum(self) -> float:
        return sum(p.wall for p in self.shards) + self.merge.wall


def run(command: Sequence[str]) -> Proc:
    """Run a child; its own wall, CPU and peak RSS from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Proc(proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss * 1024 / 1e6, out.read().decode("utf-8", "replace"),
                    err.read().decode("utf-8", "replace"))  # fmt: skip


def shard_options_exist() -> bool:
    """Whether this nbia-audit's verify takes ``--shard`` and ``--merge`` (issue 14, H4)."""
    done = subprocess.run([*CLI, "verify", "--help"], capture_output=True, text=True, check=False)
    return "--shard" in done.stdout and "--merge" in done.stdout


def fresh(data: Path) -> None:
    """No local state: the next run hashes every file (and a merge writes the records)."""
    shutil.rmtree(data / STATE_FOLDER, ignore_errors=True)


def one_process(lock: Path, data: Path, level: str) -> Proc:
    fresh(data)
    return run([*CLI, "verify", str(lock), str(data), "--level", level, "-q"])


def sharded(lock: Path, data: Path, level: str, count: int, parallel: int, tmp: Path) -> Sharded:
    fresh(data)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{count}-", dir=tmp))
    commands = [
        [*CLI, "verify", str(lock), str(data), "--level", level, "--shard", f"{k}/{count}",
         "--shard-dir", str(run_dir), "-q"]
        for k in range(1, count + 1)
    ]  # fmt: skip
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        shards = tuple(pool.map(run, commands))
    merge = run([*CLI, "verify", str(lock), str(data), "--merge", str(run_dir), "-q"])
    elapsed = time.perf_counter() - start
    shutil.rmtree(run_dir, ignore_errors=True)
    return Sharded(count, parallel, shards, merge, elapsed)


def verdict(proc: Proc) -> str:
    """The verdict a verify printed, without what differs between runs (times, counts of
    records written, shard bookkeeping): its first line's verdict word."""
    first = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    found = re.search(r": ([A-Z]+) \(", first)
    return found.group(1) if found else first


# NLST in the Imaging Data Commons index (idc-index-data 25.0.5), issue 14.
NLST_SERIES = 203_087
NLST_IMAGES = 21_080_000
NLST_BYTES = 11.1e12


def on_paper(
    cpu_per_file: float,
    cpu_per_byte: float,
    merge_per_file: float | None,
    cores: int,
    bandwidths: list[float],
) -> None:
    """NLST's wall time on 1, 8 and 64 nodes from this run's rates.

    NLST's mean image is 11.1 TB / 21.08 M = 527 kB, the corpus's about 526 kB: the CPU per
    file measured here (everything one process does per file at this size) applies as is.
    A node runs its shards with ``cores`` busy cores and reads at ``bandwidth`` GB/s; it takes
    the longer of the two. The merge runs once, on one core, after every shard.
    """
    print()
    print(f"on paper, NLST ({NLST_SERIES:,} series, {NLST_IMAGES / 1e6:.2f} M images,"
          f" {NLST_BYTES / 1e12:.1f} TB; mean image {NLST_BYTES / NLST_IMAGES / 1e3:.0f} kB):"
          f" {cpu_per_file * 1e3:.2f} ms CPU per file ({cpu_per_byte * 1e9:.2f} s per GB),"
          f" {cores} cores per node")  # fmt: skip
    cpu = NLST_IMAGES * cpu_per_file
    merge = NLST_IMAGES * merge_per_file if merge_per_file is not None else None
    print(md_row("nodes", "storage per node (GB/s)", "CPU-bound (min)", "storage-bound (min)",
                 "shards (min)", "merge (min)", "wall (min)"))  # fmt: skip
    print(md_row("---:", *["---:"] * 6))
    for bandwidth in bandwidths:
        for nodes in (1, 8, 64):
            by_cpu = cpu / cores / nodes
            by_io = NLST_BYTES / (bandwidth * 1e9) / nodes
            shards = max(by_cpu, by_io)
            total = f"{(shards + merge) / 60:.1f}" if merge is not None else "?"
            print(md_row(nodes, f"{bandwidth:g}", f"{by_cpu / 60:.1f}",
                         f"{by_io / 60:.1f}", f"{shards / 60:.1f}",
                         f"{merge / 60:.1f}" if merge is not None else "not measured",
                         total))  # fmt: skip


def md_row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, required=True, help="build and work directory")
    parser.add_argument("--collections", type=int, default=2)
    parser.add_argument("--patients", type=int, default=50, help="per collection")
    parser.add_argument("--studies", type=int, default=2, help="per patient")
    parser.add_argument("--series", type=int, default=5, help="per study")
    parser.add_argument("--images", type=int, default=21, help="per series (about)")
    parser.add_argument("--image-bytes", type=int, default=512 * 1024)
    parser.add_argument("--level", default="full", choices=("full", "quick", "stat"))
    parser.add_argument(
        "--shards", type=int, action="append", help="shard counts (repeatable; default 2 and 4)"
    )
    parser.add_argument("--node-cores", type=int, default=32, help="on paper: cores per node")
    parser.add_argument(
        "--node-gbs",
        type=float,
        action="append",
        help="on paper: storage read bandwidth per node, GB/s (repeatable; default 1 and 5)",
    )
    args = parser.parse_args()
    args.node_gbs = args.node_gbs or [1.0, 5.0]
    counts = args.shards or [2, 4]
    args.dir.mkdir(parents=True, exist_ok=True)
    data = args.dir / "data"
    # Built and locked by a child: the lock runs in-process there, and a child's peak RSS
    # starts at its parent's high-water mark (see bench_memory), which must stay small.
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "prepare", *sys.argv[1:]],
                   check=True)  # fmt: skip
    lock = args.dir / "dataset.lock"
    files, size = bench_verify.warm(data)
    print(f"copy: {files:,} files, {size / 1e9:.2f} GB; {os.cpu_count()} cores; page cache"
          f" warm; level {args.level}; each run from no local state")  # fmt: skip
    available = shard_options_exist()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        first = one_process(lock, data, args.level)
        print(f"  one process: {first.wall:.1f} s", file=sys.stderr, flush=True)
        runs: list[Sharded] = []
        if available:
            for count in counts:
                for parallel in (1, 2):
                    runs.append(sharded(lock, data, args.level, count, parallel, tmp))
                    print(f"  {count} shards, {parallel} at a time: {runs[-1].elapsed:.1f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
        last = one_process(lock, data, args.level)
    base_cpu = (first.cpu + last.cpu) / 2
    base_wall = (first.wall + last.wall) / 2
    print(
        md_row(
            "run",
            "processes",
            "CPU (s)",
            "x one process",
            "wall, summed (s)",
            "x one process",
            "elapsed (s)",
            "merge (s)",
            "merge share",
            "peak RSS (MB)",
        )
    )
    print(md_row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"))
    for label, p in (("one process (first)", first), ("one process (last)", last)):
        print(md_row(label, 1, f"{p.cpu:.1f}", f"{p.cpu / base_cpu:.2f}", f"{p.wall:.1f}",
                     f"{p.wall / base_wall:.2f}", f"{p.wall:.1f}", "", "",
                     f"{p.peak_mb:.0f}"))  # fmt: skip
    wrong = [f"one process: exit {p.exit_code}: {p.stderr.strip()[-300:]}"
             for p in (first, last) if p.exit_code != 0]  # fmt: skip
    checks: list[tuple[str, bool]] = []
    for s in runs:
        how = "one after another" if s.parallel == 1 else f"{s.parallel} at a time"
        share = s.merge.wall / s.elapsed
        peak = max(p.peak_mb for p in (*s.shards, s.merge))
        print(md_row(f"{s.count} shards, {how}, + merge", s.count + 1, f"{s.cpu:.1f}",
                     f"{s.cpu / base_cpu:.2f}", f"{s.wall_sum:.1f}",
                     f"{s.wall_sum / base_wall:.2f}", f"{s.elapsed:.1f}",
                     f"{s.merge.wall:.2f}", f"{share:.1%}", f"{peak:.0f}"))  # fmt: skip
        for k, p in enumerate(s.shards, start=1):
            if p.exit_code != 0:
                wrong.append(f"shard {k}/{s.count}: exit {p.exit_code}: {p.stderr[-300:]}")
        if s.merge.exit_code != 0 or verdict(s.merge) != verdict(first):
            wrong.append(f"merge of {s.count}: exit {s.merge.exit_code}, verdict"
                         f" {verdict(s.merge)!r} against {verdict(first)!r}:"
                         f" {s.merge.stderr[-300:]}")  # fmt: skip
        work = s.cpu / base_cpu - 1
        checks.append(
            (
                f"{s.count} shards ({how}): total CPU {work:+.1%} against one process"
                f" (aim: within {WORK_BOUND:.0%})",
                abs(work) <= WORK_BOUND,
            )
        )
        checks.append((f"{s.count} shards ({how}): merge {share:.1%} of the run"
                       f" (aim: under {MERGE_BOUND:.0%})", share < MERGE_BOUND))  # fmt: skip
    print()
    print(f"one process: {files / base_wall:,.0f} files/s, {size / base_wall / 1e6:,.0f} MB/s"
          f" wall; {base_cpu / files * 1e3:.2f} ms CPU per file,"
          f" {base_cpu / size * 1e9:.2f} s CPU per GB; spread first/last"
          f" {abs(first.wall - last.wall) / base_wall:.1%} of the wall")  # fmt: skip
    for line, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {line}")
    widest = max(runs, key=lambda r: (r.count, -r.parallel), default=None)
    merge_per_file = widest.merge.wall / files if widest else None
    on_paper(base_cpu / files, base_cpu / size, merge_per_file, args.node_cores, args.node_gbs)
    print(
        f"timestamp: {time.strftime('%Y-%m-%d %H:%M:%S')}; the measuring parent's own peak"
        f" {own_peak_mb():.0f} MB (a child's peak RSS is at least its parent's at the spawn)"
    )
    if not available:
        wrong.append(
            "this nbia-audit has no `verify --shard K/N --shard-dir RUN` and"
            " `verify --merge RUN` (issue 14): only the one-process run was measured"
        )
    if wrong:
        raise SystemExit("not measured:\n" + "\n".join(wrong))


def prepare() -> None:
    """Child: build (or reuse) the corpus and lock it."""
    parser = argparse.ArgumentParser()
    for name, default in (
        ("--collections", 2),
        ("--patients", 50),
        ("--studies", 2),
        ("--series", 5),
        ("--images", 21),
        ("--image-bytes", 512 * 1024),
    ):
        parser.add_argument(name, type=int, default=default)  # fmt: skip
    parser.add_argument("--dir", type=Path, required=True)
    args, _ = parser.parse_known_args(sys.argv[2:])
    bench_verify.build(args, args.dir / "data", args.dir / "build.shape")
    bench_verify.lock(args, args.dir)


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        prepare()
    else:
        main()

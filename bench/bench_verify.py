"""Benchmark `verify`: each level against the obvious baseline, measured in the same run.

Builds (or reuses) a copy of N real DICOM files of about 0.5 MB from the emulator's corpus
builder, locks the same corpus from an emulator in its own process, reads the whole copy
once so every measurement starts from the same warm page cache, then prints:

* ``full``  (MD5 of every file, identity from every header, state recorded) against
  ``md5sum`` over the same files on all cores (``find | xargs -0 -P CORES -n 500 md5sum``);
* ``quick`` (xxh3-128 against the last full pass) against ``full``;
* ``stat``  on the unchanged tree against ``find DIR -type f -printf '%s %T@\\n'``.

Library calls are timed in-process (the ``nbia-audit verify`` process adds interpreter start
and imports, printed separately). Usage:

    python bench/bench_verify.py --dir /tmp/nbia-bench-verify     # 20,648 x 0.5 MB (10.9 GB)
    python bench/bench_verify.py --dir /tmp/bv --patients 5        # a quick smoke run

The build is reused when ``--dir`` already holds one of the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import emulator_process, row, timed

from nbia_audit.archive.view import ArchiveView
from nbia_audit.cli.main import cli as nbia_cli
from nbia_audit.client import NbiaClient
from nbia_audit.findings import AuditReport
from nbia_audit.lock.run import lock_dataset
from nbia_audit.verify.run import verify_copy


def corpus_args(args: argparse.Namespace) -> list[str]:
    return [
        "--seed", "1", "--collections", str(args.collections), "--patients", str(args.patients),
        "--studies", str(args.studies), "--series", str(args.series), "--images", str(args.images),
        "--image-bytes", str(args.image_bytes),
    ]  # fmt: skip


def build(args: argparse.Namespace, data: Path, marker: Path) -> None:
    """Write the corpus unless ``data`` already holds this very shape."""
    shape = json.dumps(corpus_args(args))
    if marker.is_file() and marker.read_text() == shape:
        print(f"reusing the build in {data}")
        return
    shutil.rmtree(data, ignore_errors=True)
    marker.unlink(missing_ok=True)
    print(f"building {data} ...", flush=True)
    command = [sys.executable, "-m", "nbia_audit", "emulator", "build", "--out", str(data)]
    _, seconds = timed(lambda: subprocess.run(command + corpus_args(args), check=True))
    print(f"  built in {seconds:.0f} s")
    marker.write_text(shape)


def lock(args: argparse.Namespace, workdir: Path) -> Path:
    """Lock every collection of the same corpus, served by an emulator process."""
    lock_path = workdir / "dataset.lock"
    marker = workdir / "lock.shape"
    shape = json.dumps(corpus_args(args))
    if lock_path.is_file() and marker.is_file() and marker.read_text() == shape:
        return lock_path
    print("locking ...", flush=True)
    for stale in (lock_path, lock_path.with_name(lock_path.name + ".db")):
        stale.unlink(missing_ok=True)  # a re-lock would keep the old pins
    with emulator_process(corpus_args(args)) as url, NbiaClient(url) as client:
        select = "".join(f"  - collection: {c}\n" for c in client.collections())
        spec = workdir / "dataset.yaml"
        spec.write_text(f"name: bench\nserver: {url}\nselect:\n{select}")
        lock_dataset(spec, ArchiveView(client), lock_path=lock_path)
    marker.write_text(shape)
    return lock_path


def warm(data: Path) -> tuple[int, int]:
    """Read every file once (page cache); return (files, bytes)."""
    files = total = 0
    for path in data.rglob("*.dcm"):
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(1 << 20):
                total += len(chunk)
        files += 1
    return files, total


def shell(command: str) -> float:
    _, seconds = timed(lambda: subprocess.run(command, shell=True, check=True))
    return seconds


def best(fn: object, repeat: int) -> tuple[AuditReport, float]:
    assert callable(fn)
    runs = [timed(fn) for _ in range(repeat)]
    return min(runs, key=lambda r: r[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="build and work directory")
    parser.add_argument("--collections", type=int, default=2)
    parser.add_argument("--patients", type=int, default=50, help="per collection")
    parser.add_argument("--studies", type=int, default=2, help="per patient")
    parser.add_argument("--series", type=int, default=5, help="per study")
    parser.add_argument("--images", type=int, default=21, help="per series (about)")
    parser.add_argument("--image-bytes", type=int, default=512 * 1024)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each timing")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    args.dir.mkdir(parents=True, exist_ok=True)
    data = args.dir / "data"
    build(args, data, args.dir / "build.shape")
    lock_path = lock(args, args.dir)
    files, size = warm(data)
    print(f"copy: {files} files, {size / 1e9:.2f} GB; {cores} cores; page cache warm")

    state = data / ".nbia-audit"
    md5sum_runs, full_runs = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        md5sum_runs.append(shell(
            f"find {data} -type f -name '*.dcm' -print0 | xargs -0 -P {cores} -n 500 md5sum"
            " > /dev/null"
        ))  # fmt: skip
        shutil.rmtree(state, ignore_errors=True)  # each full pass starts with no state
        full_runs.append(timed(lambda: verify_copy(lock_path, data, level="full")))
    md5sum = min(md5sum_runs)
    full, full_s = min(full_runs, key=lambda r: r[1])
    quick, quick_s = best(lambda: verify_copy(lock_path, data, level="quick"), args.repeat)
    find_runs, stat_runs = [], []
    for _ in range(5):
        find_runs.append(shell(f"find {data} -type f -printf '%s %T@\\n' > /dev/null"))
        stat_runs.append(timed(lambda: verify_copy(lock_path, data, level="stat")))
    find_s = min(find_runs)
    stat, stat_s = min(stat_runs, key=lambda r: r[1])
    cli = f"{sys.executable} -m nbia_audit verify"
    if "verify" not in nbia_cli.commands:  # not registered yet: the command object itself
        cli = f"{sys.executable} -c 'from nbia_audit.cli.verify import verify; verify()'"
    cli_s = min(shell(f"{cli} {lock_path} {data} --level stat -q > /dev/null") for _ in range(3))
    for name, report in (("full", full), ("quick", quick), ("stat", stat)):
        assert report.clean, f"{name}: {report.counts()}"
    assert quick.facts["proven_xxh3"] == files and stat.facts["unchanged_stat"] == files

    print(row("", "wall (s)", "MB/s", "files/s"))
    for label, seconds in (
        (f"md5sum, xargs -P {cores}", md5sum),
        ("nbia-audit verify --level full", full_s),
        ("nbia-audit verify --level quick", quick_s),
        ("find -printf '%s %T@'", find_s),
        ("nbia-audit verify --level stat", stat_s),
        ("  (same, as a CLI process)", cli_s),
    ):
        print(
            row(label, f"{seconds:.3f}", f"{size / seconds / 1e6:,.0f}", f"{files / seconds:,.0f}")
        )
    print(f"full vs md5sum:  {md5sum / full_s:.2f}x the speed (aim: at least 0.9x)")
    print(f"quick vs full:   {full_s / quick_s:.1f}x faster (aim: at least 3x)")
    print(f"stat vs find:    {stat_s / find_s:.1f}x the time (aim: within 3x)")
    print(f"timestamp: {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()

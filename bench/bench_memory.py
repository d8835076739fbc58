"""Where memory and size go at scale: peak RSS and wall time of each verb, per locked image.

The measurement for issue 14 (bounded memory). For each size (10 k, 100 k and 1 M images in
series of 126, NLST's median) a child process writes a synthetic, self-consistent lock pair
(``bench_lockproof.synthetic_pair``) and, up to ``--files-up-to`` images, a folder with one
tiny file at each image's ``classic`` layout path whose content matches the lock: it holds
the image's SOP UID, and the lock pins the MD5 of those bytes. The files are not DICOM, so
verify identifies each by its content MD5 (as it does any file whose header it cannot read)
and the copy verifies clean. Then every measured step runs as its own child process and the
parent reads that child's peak RSS from ``os.wait4`` (``ru_maxrss``) and its wall time:

* ``read_lock(load_images=False)`` (the proof alone) and ``read_lock(load_images=True)``;
* ``verify --level stat`` and ``--level quick`` over an empty folder (everything missing);
* ``verify --level stat`` over the matching files, twice: the first pass (no state records:
  every file is new and hashed) and the second (records and the stat memo from the first);
* ``verify --level quick`` over the same files, twice: the first pass from no state again
  (the state folder is removed first), the second against the fingerprints it recorded;
* ``report`` (the publication supplement, markdown).

Every step also runs on a one-series lock (126 images): what a step needs at that size is
its fixed cost (interpreter, imports, SQLite), so "growth" is the peak RSS at N images minus
the peak at 126, and "MB per 100 k images" is that growth scaled. Bare ``import nbia_audit``
and ``nbia-audit --help`` children are printed as reference rows. Sizes: the lock database's
bytes per image and the text lock's bytes per series. With 100 k and 1 M images both
measured, issue 14's check is printed per verify step: peak at 1 M under 300 MB and within
20 % of the peak at 100 k (PASS/FAIL).

Measuring correctly: the parent imports nothing of nbia_audit and never holds a lock in
memory, because on Linux a child's ``ru_maxrss`` is at least the parent's own peak at the
time of the spawn (``subprocess`` starts children with ``vfork``; ``exec`` records the
parent's high-water mark as the child's). The parent's peak is printed as a check.

``--profile`` runs ``verify --level stat`` once more over the largest file folder under
``tracemalloc`` in a child, snapshots the traced heap as it peaks, and prints the top
allocations by the allocating line and by the innermost nbia_audit line. Usage:

    nice -n 19 python bench/bench_memory.py                    # 10 k, 100 k and 1 M images
    python bench/bench_memory.py --quick                       # 10 k only
    python bench/bench_memory.py --images 100000 --profile     # one size, with the profile

Writing a million files takes a while (each size's files are written once per run, by a
child, with a few threads; the time is printed). Drift is not measured: it needs an
emulator serving the same synthetic corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REFERENCE_IMAGES = 126  # one series: what every step costs before the lock's size matters
PROFILE_TOP = 10

# The steps, in order: label, what the child runs (after the Python interpreter), the exit
# code that says it ran to the end, what folder it needs ("" none, "empty" a fresh empty
# folder, "files" the matching files) and whether the copy's state folder is removed first.
# {lock}, {empty}, {files} are filled in per size.
STEPS: tuple[tuple[str, tuple[str, ...], int, str, bool], ...] = (
    ("read_lock(load_images=False)", (str(HERE), "read-lock", "{lock}", "proof"), 0, "", False),
    ("read_lock(load_images=True)", (str(HERE), "read-lock", "{lock}", "images"), 0, "", False),
    ("verify stat, empty folder",
     ("-m", "nbia_audit", "verify", "{lock}", "{empty}", "--level", "stat", "-q"), 1, "empty",
     False),
    ("verify quick, empty folder",
     ("-m", "nbia_audit", "verify", "{lock}", "{empty}", "--level", "quick", "-q"), 1, "empty",
     False),
    ("verify stat, matching files, 1st pass",
     ("-m", "nbia_audit", "verify", "{lock}", "{files}", "--level", "stat", "-q"), 0, "files",
     True),
    ("verify stat, matching files, 2nd pass",
     ("-m", "nbia_audit", "verify", "{lock}", "{files}", "--level", "stat", "-q"), 0, "files",
     False),
    ("verify quick, matching files, 1st pass",
     ("-m", "nbia_audit", "verify", "{lock}", "{files}", "--level", "quick", "-q"), 0, "files",
     True),
    ("verify quick, matching files, 2nd pass",
     ("-m", "nbia_audit", "verify", "{lock}", "{files}", "--level", "quick", "-q"), 0, "files",
     False),
    ("report (supplement, md)", ("-m", "nbia_audit", "report", "{lock}"), 0, "", False),
)  # fmt: skip
# What a kept folder of files was written for: the layout and content of write_files.
FILES_MARK = "{images} images; classic layout; content: the SOP UID (bench_lockproof)"
STATE_FOLDER = ".nbia-audit"  # the copy's own state (records, memo), removed for a 1st pass
# Issue 14's bound: peak RSS of verify at 1 M images under this, and within FLAT of 100 k.
BOUND_MB = 300.0
FLAT = 0.20
BASELINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baseline: python -c 'import nbia_audit'", ("-c", "import nbia_audit")),
    ("baseline: nbia-audit --help", ("-m", "nbia_audit", "--help")),
)


@dataclass(frozen=True, slots=True)
class Measured:
    """One child process: how it ended, how long it took, its peak resident set."""

    exit_code: int
    wall: float  # seconds
    cpu: float  # seconds of user + system time
    peak_mb: float  # 10^6 bytes
    stderr_tail: str


@dataclass(frozen=True, slots=True)
class Corpus:
    """A lock pair (and maybe a folder of files matching it) written by a child."""

    lock: Path
    files: Path | None
    images: int
    series: int
    database_bytes: int
    text_bytes: int
    database_objects: dict[str, int]  # table or index name -> bytes of its pages
    pair_seconds: float  # writing the lock pair
    files_seconds: float  # writing the files (0 without files)


def child_environment(scratch: Path) -> dict[str, str]:
    """Children compile nbia_audit once into a cache in ``scratch``, as an installed copy
    would have it (with PYTHONDONTWRITEBYTECODE every child recompiled every module: seconds
    of start-up and megabytes of compiler memory that no user pays)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return env


def measure(command: Sequence[str], env: dict[str, str]) -> Measured:
    """Run ``command`` as a child; its own peak RSS from ``wait4``, not the parent's."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").strip().splitlines()
    # Linux reports ru_maxrss in KiB.
    cpu = usage.ru_utime + usage.ru_stime
    tail = lines[-1] if lines else ""
    return Measured(proc.returncode, wall, cpu, usage.ru_maxrss * 1024 / 1e6, tail)


def own_peak_mb() -> float:
    """This process's own high-water mark (VmHWM). ``RUSAGE_SELF`` would not do: it includes
    the peak of whatever started this process (pytest, say), which the children do not
    inherit; what they inherit is the high-water mark of this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit("no VmHWM in /proc/self/status: this benchmark needs Linux")


def make_corpus(
    folder: Path, images: int, with_files: bool, env: dict[str, str], kept: Path | None = None
) -> Corpus:
    """A fresh lock pair in ``folder``; with files, in ``folder`` too, or in ``kept`` (reused
    from an earlier run when it holds this size's, else written there for the next)."""
    folder.mkdir(parents=True)
    lock = folder / "dataset.lock"
    files = None
    if with_files:
        files = kept / f"n{images}" if kept is not None else folder / "files"
    command = [sys.executable, str(HERE), "make", str(lock), str(images)]
    if files is not None:
        command.append(str(files))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"writing the {images:,}-image lock pair failed:\n{done.stderr}")
    facts = json.loads(done.stdout)
    return Corpus(lock, files, facts["images"], facts["series"], facts["database_bytes"],
                  facts["text_bytes"], facts.get("objects", {}), facts["pair_seconds"],
                  facts["files_seconds"])  # fmt: skip


def run_steps(
    corpus: Corpus, scratch: Path, env: dict[str, str], only: Sequence[str] = ()
) -> dict[str, Measured]:
    """Every step (or those whose label contains one of ``only``) on ``corpus``, in order."""
    results: dict[str, Measured] = {}
    for label, template, _, needs, fresh_state in STEPS:
        if needs == "files" and corpus.files is None:
            continue
        if only and not any(part in label for part in only):
            continue
        if fresh_state and corpus.files is not None:
            shutil.rmtree(corpus.files / STATE_FOLDER, ignore_errors=True)
        empty = tempfile.mkdtemp(prefix="empty-", dir=scratch) if needs == "empty" else ""
        values = {"lock": str(corpus.lock), "empty": empty, "files": str(corpus.files)}
        command = [sys.executable, *(part.format_map(values) for part in template)]
        results[label] = measure(command, env)
        print(f"  {label}: {results[label].peak_mb:.0f} MB, {results[label].wall:.1f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    return results


def md_row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def print_tables(
    baselines: dict[str, Measured],
    reference: dict[str, Measured],
    corpora: list[Corpus],
    results: list[dict[str, Measured]],
) -> None:
    print(
        md_row(
            "step",
            "images",
            "exit",
            "wall (s)",
            "CPU (s)",
            "peak RSS (MB)",
            "growth over 126 images (MB)",
            "MB per 100 k images",
            "bytes per image",
        )
    )
    print(md_row("---", *["---:"] * 8))
    for label, m in baselines.items():
        print(md_row(label, "", m.exit_code, f"{m.wall:.2f}", f"{m.cpu:.2f}", f"{m.peak_mb:.0f}",
                     "", "", ""))  # fmt: skip
    for label, m in reference.items():
        print(md_row(label, REFERENCE_IMAGES, m.exit_code, f"{m.wall:.2f}", f"{m.cpu:.2f}",
                     f"{m.peak_mb:.0f}", "", "", ""))  # fmt: skip
    for corpus, measured in zip(corpora, results, strict=True):
        for label, m in measured.items():
            growth = m.peak_mb - reference[label].peak_mb
            print(md_row(label, f"{corpus.images:,}", m.exit_code, f"{m.wall:.2f}", f"{m.cpu:.2f}",
                         f"{m.peak_mb:.0f}", f"{growth:.0f}",
                         f"{growth * 1e5 / corpus.images:.1f}",
                         f"{growth * 1e6 / corpus.images:.0f}"))  # fmt: skip
    print()
    print(md_row("images", "series", "lock database (MB)", "database bytes per image",
                 "text lock (kB)", "text lock bytes per series"))  # fmt: skip
    print(md_row("---:", "---:", "---:", "---:", "---:", "---:"))
    for c in corpora:
        print(md_row(f"{c.images:,}", f"{c.series:,}", f"{c.database_bytes / 1e6:.1f}",
                     f"{c.database_bytes / c.images:.0f}", f"{c.text_bytes / 1e3:.0f}",
                     f"{c.text_bytes / c.series:.0f}"))  # fmt: skip
    largest = corpora[-1]
    print()
    print(md_row(f"lock database at {largest.images:,} images: table or index", "MB",
                 "bytes per image"))  # fmt: skip
    print(md_row("---", "---:", "---:"))
    rest = 0
    for name, size in sorted(largest.database_objects.items(), key=lambda item: -item[1]):
        if size < largest.database_bytes / 100:
            rest += size
        else:
            print(md_row(f"`{name}`", f"{size / 1e6:.1f}", f"{size / largest.images:.0f}"))
    print(md_row("everything else", f"{rest / 1e6:.1f}", f"{rest / largest.images:.0f}"))


def check_exits(reference: dict[str, Measured], results: list[dict[str, Measured]]) -> list[str]:
    """Every step must have run to the end (a crash measures nothing)."""
    expected = {label: code for label, _, code, _, _ in STEPS}
    wrong = []
    for measured in (reference, *results):
        for label, m in measured.items():
            if m.exit_code != expected[label]:
                wrong.append(f"{label}: exit {m.exit_code}, expected {expected[label]}:"
                             f" {m.stderr_tail}")  # fmt: skip
    return wrong


def check_flat(corpora: list[Corpus], results: list[dict[str, Measured]]) -> list[tuple[str, bool]]:
    """Issue 14's check, per verify step measured at both of the two largest sizes: the peak at
    the largest under BOUND_MB and within FLAT of the peak at the one before. Returns
    (line, passed) per step; nothing when fewer than two sizes were measured."""
    if len(corpora) < 2:
        return []
    (small, at_small), (large, at_large) = list(zip(corpora, results, strict=True))[-2:]
    lines = []
    for label, m in at_large.items():
        if not label.startswith("verify") or label not in at_small:
            continue
        base = at_small[label].peak_mb
        growth = (m.peak_mb - base) / base
        passed = m.peak_mb < BOUND_MB and abs(growth) <= FLAT
        lines.append((
            f"{'PASS' if passed else 'FAIL'}: {label}: {m.peak_mb:.0f} MB at {large.images:,}"
            f" images ({'<' if m.peak_mb < BOUND_MB else '>='} {BOUND_MB:.0f} MB),"
            f" {growth:+.0%} against {base:.0f} MB at {small.images:,} (bound"
            f" {FLAT:.0%})", passed))  # fmt: skip
    return lines


def profile(corpus: Corpus, scratch: Path, env: dict[str, str]) -> None:
    """verify stat over the matching files under tracemalloc, in a child."""
    assert corpus.files is not None
    out = scratch / "profile.json"
    argv = ["verify", str(corpus.lock), str(corpus.files), "--level", "stat", "-q"]
    done = subprocess.run([sys.executable, str(HERE), "trace", str(out), *argv],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False, env=env)  # fmt: skip
    if not out.is_file():
        raise SystemExit(f"the traced verify failed:\n{done.stderr}")
    facts = json.loads(out.read_text())
    print()
    print(f"tracemalloc, verify --level stat over {corpus.images:,} matching files"
          f" (exit {facts['exit']}): traced peak {facts['peak'] / 1e6:.0f} MB, snapshot at"
          f" {facts['snapshot'] / 1e6:.0f} MB")  # fmt: skip
    for title, key in (("allocating line", "by_line"), ("innermost nbia_audit line", "by_ours")):
        print()
        print(md_row(f"top by {title}", "MB", "blocks", "bytes per image"))
        print(md_row("---", "---:", "---:", "---:"))
        for where, size, count in facts[key]:
            print(md_row(f"`{where}`", f"{size / 1e6:.1f}", f"{count:,}",
                         f"{size / corpus.images:.0f}"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images",
        type=int,
        action="append",
        help="a size to measure (repeatable; default 10 k, 100 k and 1 M)",
    )
    parser.add_argument("--quick", action="store_true", help="10 k images only")
    parser.add_argument(
        "--files-up-to",
        type=int,
        default=1_000_000,
        metavar="N",
        help="write a folder of matching files for sizes up to N images",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="tracemalloc verify stat over the largest folder of files",
    )
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--files-dir",
        type=Path,
        help="keep each size's files here and reuse them in later runs (the files depend only"
        " on the size: writing a million takes a while); the lock pair is always written anew",
    )
    parser.add_argument(
        "--steps",
        action="append",
        metavar="TEXT",
        help="only the steps whose label contains TEXT (repeatable; a 2nd pass needs its 1st:"
        " e.g. --steps 'stat, matching' runs both stat passes over the files)",
    )
    parser.add_argument(
        "--write-files-only",
        action="store_true",
        help="with --files-dir: write (or check) each size's files, measure nothing",
    )
    args = parser.parse_args()  # fmt: skip
    if args.write_files_only and args.files_dir is None:
        parser.error("--write-files-only needs --files-dir")
    sizes = args.images or ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scratch = Path(tmp)
        env = child_environment(scratch)
        if args.write_files_only:
            for images in sorted(sizes):
                started = time.perf_counter()
                c = make_corpus(scratch / f"n{images}", images, True, env, args.files_dir)
                print(f"{c.files}: {c.images:,} files"
                      f" {'reused' if c.files_seconds < 0 else 'written'} in"
                      f" {time.perf_counter() - started:.0f} s")  # fmt: skip
            return
        subprocess.run([sys.executable, str(HERE), "warm"], env=env, check=True)
        baselines = {label: measure([sys.executable, *tail], env) for label, tail in BASELINES}
        print(f"{REFERENCE_IMAGES} images (the fixed cost) ...", file=sys.stderr, flush=True)
        reference_corpus = make_corpus(scratch / "reference", REFERENCE_IMAGES, True, env)
        reference = run_steps(reference_corpus, scratch, env, args.steps or ())
        corpora: list[Corpus] = []
        results: list[dict[str, Measured]] = []
        for images in sorted(sizes):
            print(f"{images:,} images ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            with_files = images <= args.files_up_to
            corpus = make_corpus(scratch / f"n{images}", images, with_files, env,
                                 args.files_dir)  # fmt: skip
            print(f"  lock pair{' and files' if with_files else ''} written in"
                  f" {time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
            corpora.append(corpus)
            results.append(run_steps(corpus, scratch, env, args.steps or ()))
        print_tables(baselines, reference, corpora, results)
        print()
        for c in corpora:
            files = f", {c.images:,} files in {c.files_seconds:.1f} s" if c.files else ""
            if c.files and c.files_seconds < 0:
                files = f", {c.images:,} files reused from an earlier run ({c.files})"
            print(f"written by a child at {c.images:,} images: lock pair in"
                  f" {c.pair_seconds:.1f} s{files}")  # fmt: skip
        flat = check_flat(corpora, results)
        if flat:
            print()
            for line, _ in flat:
                print(line)
            verdict = "PASS" if all(passed for _, passed in flat) else "FAIL"
            print(f"issue 14 memory check (every verify step measured): {verdict}")
            # An empty folder is a copy with every image missing: one finding per image,
            # which the report holds; a copy that is there is what the bound is about.
            for what, part in (
                ("copy present (matching files)", "matching files"),
                ("everything missing (one finding per image)", "empty folder"),
            ):
                group = [passed for line, passed in flat if part in line]
                if group:
                    print(f"  {what}: {'PASS' if all(group) else 'FAIL'}")  # fmt: skip
        parent_mb = own_peak_mb()
        floor = min(m.peak_mb for measured in (reference, *results) for m in measured.values())
        print(f"\nmeasuring parent's own peak: {parent_mb:.0f} MB (every child's figure is at"
              f" least this; the smallest step measured {floor:.0f} MB)")  # fmt: skip
        if args.profile:
            with_folder = [c for c in corpora if c.files is not None]
            if with_folder:
                profile(with_folder[-1], scratch, env)
        wrong = check_exits(reference, results)
        if parent_mb >= floor:
            wrong.append("the parent's peak is not below every step's: the figures are its")
        if wrong:
            raise SystemExit("not measured:\n" + "\n".join(wrong))


# ---------------------------------------------------------------------------------------------
# Children. They import nbia_audit (and bench_lockproof, the one home of the synthetic lock) only
# here, inside the child, so the measuring parent stays small (see the docstring on ru_maxrss).


def child_make(lock: Path, images: int, files: Path | None) -> None:
    """Write the lock pair and maybe one matching file per image; print the sizes as JSON.

    The files are laid out from what ``synthetic_pair`` returns, not read back through the
    lock reader, so this keeps working whatever the reader holds in memory."""
    from bench_lockproof import synthetic_pair

    from nbia_audit.store.textlock import database_path

    started = time.perf_counter()
    series, pinned = synthetic_pair(lock, images)
    pair_seconds = time.perf_counter() - started
    started = time.perf_counter()
    files_seconds = 0.0
    if files is not None:
        done = files.with_name(files.name + ".complete")  # beside: verify would see it inside
        if done.is_file() and done.read_text() == FILES_MARK.format(images=len(pinned)):
            files_seconds = -1.0  # reused
        else:
            done.unlink(missing_ok=True)
            shutil.rmtree(files, ignore_errors=True)
            write_files(files, series, pinned)
            done.write_text(FILES_MARK.format(images=len(pinned)))
            files_seconds = time.perf_counter() - started
    database = database_path(lock)
    print(json.dumps({
        "images": len(pinned),
        "series": len(series),
        "database_bytes": database.stat().st_size,
        "text_bytes": lock.stat().st_size,
        "objects": database_objects(database),
        "pair_seconds": pair_seconds,
        "files_seconds": files_seconds,
    }))  # fmt: skip


def write_files(files: Path, series: Sequence[Any], pinned: Sequence[Any]) -> None:
    """One file per image at its ``classic`` path (Collection/Patient/Study/Series/SOP.dcm),
    holding the bytes whose MD5 the lock pins for it; a few threads, one series each (file
    creation is system calls that release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from bench_lockproof import image_content

    by_series: dict[str, list[str]] = {}
    for image in pinned:
        by_series.setdefault(image.series_uid, []).append(image.sop_uid)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL

    def one_series(row: Any) -> None:
        folder = files / row.collection / row.patient_id / row.study_uid / row.series_uid
        folder.mkdir(parents=True)
        for sop in by_series.get(row.series_uid, ()):
            fd = os.open(folder / f"{sop}.dcm", flags, 0o644)
            try:
                os.write(fd, image_content(sop))
            finally:
                os.close(fd)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in pool.map(one_series, series):
            pass


def database_objects(path: Path) -> dict[str, int]:
    """Bytes of pages per table and index (SQLite's ``dbstat``): where the database's size is."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return {str(name): int(size) for name, size in rows}


def child_warm() -> None:
    """Fill the bytecode cache: what the CLI and the reader import (the standard library and
    dependencies too), and every module of nbia_audit."""
    import compileall

    import bench_lockproof  # noqa: F401  (imported for its imports)

    import nbia_audit.cli

    package = Path(nbia_audit.cli.__file__ or "").parent.parent
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"compiling {package} failed")


def child_read_lock(lock: Path, keep_images: bool) -> None:
    from nbia_audit.store.reader import read_lock

    read_lock(lock, load_images=keep_images)


def child_trace(out: Path, argv: list[str]) -> None:
    """Run the CLI with ``argv`` under tracemalloc; write the heap at its peak as JSON.

    A sampler thread snapshots the traced heap each time it grows by a quarter past the last
    snapshot, so the snapshot kept is the heap near its peak (not what is left at the end).
    Each snapshot walks every live block: steps of a tenth took about 40 minutes at 100 k images
    on a loaded machine.
    Imports happen before tracing starts: they are the fixed cost, not the growth.
    """
    import threading
    import tracemalloc

    from nbia_audit.cli import main as cli_main

    kept: list[tuple[int, tracemalloc.Snapshot]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            current, _ = tracemalloc.get_traced_memory()
            if current > 1.25 * (kept[-1][0] if kept else 1e6):
                snapshot = tracemalloc.take_snapshot()
                kept[:] = [(current, snapshot)]

    tracemalloc.start(10)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sys.argv = ["nbia-audit", *argv]
    code: object = 0
    try:
        cli_main()
    except SystemExit as exit_:
        code = exit_.code
    stop.set()
    sampler.join()
    peak = tracemalloc.get_traced_memory()[1]
    if not kept:
        kept.append((tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()))
    size, snapshot = kept[-1]
    snapshot = snapshot.filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, threading.__file__),
        tracemalloc.Filter(False, str(HERE)),
    ])  # fmt: skip
    by_line = [
        (f"{_short(s.traceback[-1].filename)}:{s.traceback[-1].lineno}", s.size, s.count)
        for s in snapshot.statistics("lineno")[:PROFILE_TOP]
    ]
    ours: dict[str, list[int]] = {}
    for trace in snapshot.traces:
        frames = list(trace.traceback)  # oldest first
        frame = next((f for f in reversed(frames) if "nbia_audit" in f.filename), frames[-1])
        tally = ours.setdefault(f"{_short(frame.filename)}:{frame.lineno}", [0, 0])
        tally[0] += trace.size
        tally[1] += 1
    by_ours = sorted(((k, v[0], v[1]) for k, v in ours.items()), key=lambda t: -t[1])
    out.write_text(json.dumps({
        "exit": code, "peak": peak, "snapshot": size, "by_line": by_line,
        "by_ours": by_ours[:PROFILE_TOP],
    }))  # fmt: skip


def _short(filename: str) -> str:
    """``nbia_audit/verify/plan.py`` rather than the full path; stdlib by its last parts."""
    parts = Path(filename).parts
    if "nbia_audit" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("nbia_audit") :])
    return "/".join(parts[-2:])


def child_main(argv: list[str]) -> None:
    mode, rest = argv[0], argv[1:]
    if mode == "make":
        child_make(Path(rest[0]), int(rest[1]), Path(rest[2]) if len(rest) > 2 else None)
    elif mode == "warm":
        child_warm()
    elif mode == "read-lock":
        child_read_lock(Path(rest[0]), rest[1] == "images")
    elif mode == "trace":
        child_trace(Path(rest[0]), rest[1:])
    else:
        raise SystemExit(f"unknown child mode {mode!r}")


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in ("make", "warm", "read-lock", "trace"):
        child_main(sys.argv[1:])
    else:
        main()

"""Where memory and size go at scale: peak RSS and wall time of each verb, per locked image.

The baseline for issue 14 (bounded memory). For each size (10 k, 100 k and 1 M images in
series of 126, NLST's median) a child process writes a synthetic, self-consistent lock pair
(``bench_lockproof.synthetic_pair``) and, up to ``--placeholders-up-to`` images, a folder
with one tiny placeholder file at each image's ``classic`` layout path. Then every measured
step runs as its own child process and the parent reads that child's peak RSS from
``os.wait4`` (``ru_maxrss``) and its wall time:

* ``read_lock(load_images=False)`` (the proof alone) and ``read_lock(load_images=True)``;
* ``verify --level stat`` and ``--level quick`` over an empty folder (everything missing);
* ``verify --level stat`` over the placeholder folder, twice: the first pass (no state
  records: every file is new and hashed) and the second (state records from the first);
* ``report`` (the publication supplement, markdown).

Every step also runs on a one-series lock (126 images): what a step needs at that size is
its fixed cost (interpreter, imports, SQLite), so "growth" is the peak RSS at N images minus
the peak at 126, and "MB per 100 k images" is that growth scaled. Bare ``import nbia_audit``
and ``nbia-audit --help`` children are printed as reference rows. Sizes: the lock database's
bytes per image and the text lock's bytes per series.

Measuring correctly: the parent imports nothing of nbia_audit and never holds a lock in
memory, because on Linux a child's ``ru_maxrss`` is at least the parent's own peak at the
time of the spawn (``subprocess`` starts children with ``vfork``; ``exec`` records the
parent's high-water mark as the child's). The parent's peak is printed as a check.

``--profile`` runs ``verify --level stat`` once more over the largest placeholder folder
under ``tracemalloc`` in a child, snapshots the traced heap as it peaks, and prints the top
allocations by the allocating line and by the innermost nbia_audit line. Usage:

    nice -n 19 python bench/bench_memory.py                    # 10 k, 100 k and 1 M images
    python bench/bench_memory.py --quick                       # 10 k only
    python bench/bench_memory.py --images 100000 --profile     # one size, with the profile

Drift is not measured: it needs an emulator serving the same synthetic corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
REFERENCE_IMAGES = 126  # one series: what every step costs before the lock's size matters
PROFILE_TOP = 10

# The steps, in order: label, what the child runs (after the Python interpreter), the exit
# code that says it ran to the end, and whether it needs the placeholder folder.
# {lock}, {empty}, {files} are filled in per size; {empty} is a fresh folder per step.
STEPS: tuple[tuple[str, tuple[str, ...], int, bool], ...] = (
    ("read_lock(load_images=False)", (str(HERE), "read-lock", "{lock}", "proof"), 0, False),
    ("read_lock(load_images=True)", (str(HERE), "read-lock", "{lock}", "images"), 0, False),
    ("verify stat, empty folder",
     ("-m", "nbia_audit", "verify", "{lock}", "{empty}", "--level", "stat", "-q"), 1, False),
    ("verify quick, empty folder",
     ("-m", "nbia_audit", "verify", "{lock}", "{empty}", "--level", "quick", "-q"), 1, False),
    ("verify stat, placeholders, 1st pass",
     ("-m", "nbia_audit", "verify", "{lock}", "{files}", "--level", "stat", "-q"), 1, True),
    ("verify stat, placeholders, 2nd pass",
     ("-m", "nbia_audit", "verify", "{lock}", "{files}", "--level", "stat", "-q"), 1, True),
    ("report (supplement, md)", ("-m", "nbia_audit", "report", "{lock}"), 0, False),
)  # fmt: skip
BASELINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baseline: python -c 'import nbia_audit'", ("-c", "import nbia_audit")),
    ("baseline: nbia-audit --help", ("-m", "nbia_audit", "--help")),
)


@dataclass(frozen=True, slots=True)
class Measured:
    """One child process: how it ended, how long it took, its peak resident set."""

    exit_code: int
    wall: float  # seconds
    peak_mb: float  # 10^6 bytes
    stderr_tail: str


@dataclass(frozen=True, slots=True)
class Corpus:
    """A lock pair (and maybe a placeholder folder) written by a child."""

    lock: Path
    files: Path | None
    images: int
    series: int
    database_bytes: int
    text_bytes: int
    database_objects: dict[str, int]  # table or index name -> bytes of its pages


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
    return Measured(proc.returncode, wall, usage.ru_maxrss * 1024 / 1e6, lines[-1] if lines else "")


def own_peak_mb() -> float:
    """This process's own high-water mark (VmHWM). ``RUSAGE_SELF`` would not do: it includes
    the peak of whatever started this process (pytest, say), which the children do not
    inherit; what they inherit is the high-water mark of this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit("no VmHWM in /proc/self/status: this benchmark needs Linux")


def make_corpus(folder: Path, images: int, placeholders: bool, env: dict[str, str]) -> Corpus:
    folder.mkdir(parents=True)
    lock = folder / "dataset.lock"
    files = folder / "files" if placeholders else None
    command = [sys.executable, str(HERE), "make", str(lock), str(images)]
    if files is not None:
        command.append(str(files))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"writing the {images:,}-image lock pair failed:\n{done.stderr}")
    facts = json.loads(done.stdout)
    return Corpus(lock, files, facts["images"], facts["series"], facts["database_bytes"],
                  facts["text_bytes"], facts.get("objects", {}))  # fmt: skip


def run_steps(corpus: Corpus, scratch: Path, env: dict[str, str]) -> dict[str, Measured]:
    results: dict[str, Measured] = {}
    for label, template, _, needs_files in STEPS:
        if needs_files and corpus.files is None:
            continue
        empty = tempfile.mkdtemp(prefix="empty-", dir=scratch)
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
            "peak RSS (MB)",
            "growth over 126 images (MB)",
            "MB per 100 k images",
            "bytes per image",
        )
    )
    print(md_row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"))  # fmt: skip
    for label, m in baselines.items():
        print(md_row(label, "", m.exit_code, f"{m.wall:.2f}", f"{m.peak_mb:.0f}", "", "", ""))
    for label, m in reference.items():
        print(md_row(label, REFERENCE_IMAGES, m.exit_code, f"{m.wall:.2f}", f"{m.peak_mb:.0f}",
                     "", "", ""))  # fmt: skip
    for corpus, measured in zip(corpora, results, strict=True):
        for label, m in measured.items():
            growth = m.peak_mb - reference[label].peak_mb
            print(md_row(label, f"{corpus.images:,}", m.exit_code, f"{m.wall:.2f}",
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
    expected = {label: code for label, _, code, _ in STEPS}
    wrong = []
    for measured in (reference, *results):
        for label, m in measured.items():
            if m.exit_code != expected[label]:
                wrong.append(f"{label}: exit {m.exit_code}, expected {expected[label]}:"
                             f" {m.stderr_tail}")  # fmt: skip
    return wrong


def profile(corpus: Corpus, scratch: Path, env: dict[str, str]) -> None:
    """verify stat over the placeholder folder under tracemalloc, in a child."""
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
    print(f"tracemalloc, verify --level stat over {corpus.images:,} placeholder files"
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
        "--placeholders-up-to",
        type=int,
        default=100_000,
        metavar="N",
        help="write placeholder files for sizes up to N images",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="tracemalloc verify stat over the largest placeholder folder",
    )
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()  # fmt: skip
    sizes = args.images or ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scratch = Path(tmp)
        env = child_environment(scratch)
        subprocess.run([sys.executable, str(HERE), "warm"], env=env, check=True)
        baselines = {label: measure([sys.executable, *tail], env) for label, tail in BASELINES}
        print(f"{REFERENCE_IMAGES} images (the fixed cost) ...", file=sys.stderr, flush=True)
        reference_corpus = make_corpus(scratch / "reference", REFERENCE_IMAGES, True, env)
        reference = run_steps(reference_corpus, scratch, env)
        corpora: list[Corpus] = []
        results: list[dict[str, Measured]] = []
        for images in sorted(sizes):
            print(f"{images:,} images ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            placeholders = images <= args.placeholders_up_to
            corpus = make_corpus(scratch / f"n{images}", images, placeholders, env)
            print(f"  lock pair{' and placeholders' if placeholders else ''} written in"
                  f" {time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
            corpora.append(corpus)
            results.append(run_steps(corpus, scratch, env))
        print_tables(baselines, reference, corpora, results)
        parent_mb = own_peak_mb()
        floor = min(m.peak_mb for measured in (reference, *results) for m in measured.values())
        print(f"\nmeasuring parent's own peak: {parent_mb:.0f} MB (every child's figure is at"
              f" least this; the smallest step measured {floor:.0f} MB)")  # fmt: skip
        if args.profile:
            with_files = [c for c in corpora if c.files is not None]
            if with_files:
                profile(with_files[-1], scratch, env)
        wrong = check_exits(reference, results)
        if parent_mb >= floor:
            wrong.append("the parent's peak is not below every step's: the figures are its")
        if wrong:
            raise SystemExit("not measured:\n" + "\n".join(wrong))


# ---------------------------------------------------------------------------------------------
# Children. They import nbia_audit (and bench_lockproof, the one home of the synthetic lock) only
# here, inside the child, so the measuring parent stays small (see the docstring on ru_maxrss).


def child_make(lock: Path, images: int, files: Path | None) -> None:
    """Write the lock pair and maybe one placeholder per image; print the sizes as JSON."""
    from bench_lockproof import synthetic_pair

    from nbia_audit.store.reader import read_lock

    synthetic_pair(lock, images)
    contents = read_lock(lock, load_images=files is not None)
    if files is not None:
        for series in contents.series:
            folder = files / series.collection / series.patient_id / series.study_uid
            folder /= series.series_uid
            folder.mkdir(parents=True)
            for image in contents.images[series.series_uid]:
                # Unique bytes, not DICOM: every file is found, hashed and judged wrong.
                (folder / f"{image.sop_uid}.dcm").write_bytes(image.sop_uid.encode())
    print(json.dumps({
        "images": contents.image_count,
        "series": len(contents.series),
        "database_bytes": contents.database_path.stat().st_size,
        "text_bytes": lock.stat().st_size,
        "objects": database_objects(contents.database_path),
    }))  # fmt: skip


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

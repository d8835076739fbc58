"""The issue's "Done when": for N from 1 to 7, shards plus the merge give the verdict of one
process, on real copies of a real lock with missing, modified, unexpected and cross-shard
duplicate files, files outside any series, and seeded samples; a missing shard or a foreign
one makes the merge refuse (exit 3), never read clean."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.findings import AuditReport
from nbia_audit.shards import Shard
from nbia_audit.store.statefolder import STATE_DIR
from nbia_audit.verify.run import verify_copy
from nbia_audit.verify.shards import merge_verify, verify_shard
from tests.support.verify import flip_bit_keep_mtime, image_files, make_lock
from tests.verify.test_verify_property import apply, extras, write_copy

OPS = ("keep", "keep", "flip", "truncate", "delete", "rename", "duplicate", "fifo", "twins")
corpora = st.builds(
    CorpusSpec,
    seed=st.integers(0, 10_000),
    collections=st.just(1),
    patients=st.integers(1, 3),
    studies=st.just(1),
    series=st.integers(1, 2),
    images=st.integers(1, 3),
)
settings_of_a_run = st.one_of(
    st.tuples(st.sampled_from(("full", "quick", "stat")), st.none(), st.none()),
    st.tuples(st.sampled_from(("full", "quick")), st.sampled_from((0.3, 0.5, 1.0)),
              st.integers(0, 99)),
)  # fmt: skip


def tamper(op: str, path: Path, root: Path, index: int) -> None:
    if op != "twins":
        apply(op, path, root, index)
        return
    # Two copies of one image, each changed differently: which one the judge sees last
    # shows in the verdict, so the merge must order copies as one process does.
    twin = root / "twins" / f"{index}.dcm"
    twin.parent.mkdir(exist_ok=True)
    shutil.copy2(path, twin)
    flip_bit_keep_mtime(path, 100)
    flip_bit_keep_mtime(twin, 60)


def snapshot(root: Path, keep: Path) -> None:
    shutil.rmtree(keep, ignore_errors=True)
    if (root / STATE_DIR).exists():
        shutil.copytree(root / STATE_DIR, keep)


def restore(root: Path, keep: Path) -> None:
    shutil.rmtree(root / STATE_DIR, ignore_errors=True)
    if keep.exists():
        shutil.copytree(keep, root / STATE_DIR)


def records_of(root: Path) -> dict[str, tuple[str, str, str]]:
    """What the local state says of each file (not when: each run has its own stamp)."""
    path = root / STATE_DIR / "state.db"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT path, sop_uid, series_uid, md5 FROM files").fetchall()
    finally:
        conn.close()
    return {p: (sop, series, md5) for p, sop, series, md5 in rows}


def verdict(report: AuditReport) -> tuple[object, ...]:
    """Everything a report says about the copy (not when, nor how many threads)."""
    facts = {k: v for k, v in report.facts.items() if k not in ("workers", "merged_from_shards")}
    return (report.findings, report.series, report.complete, report.proof, report.proven_on,
            facts)  # fmt: skip


def sharded(lock: Path, root: Path, run: Path, count: int, level: str, sample: float | None,
            seed: int | None) -> AuditReport:  # fmt: skip
    shutil.rmtree(run, ignore_errors=True)
    for index in range(1, count + 1):
        verify_shard(lock, root, Shard(index, count), run, level=level, sample=sample, seed=seed,
                     workers=2)  # fmt: skip
    return merge_verify(lock, root, run)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=corpora, data=st.data())
def test_the_merge_of_n_shards_is_the_verdict_of_one_process(
    spec: CorpusSpec, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Emulator.from_spec(spec) as emu:
        base = Path(tmp)
        series_only = data.draw(st.booleans(), label="series-only lock")
        lock = make_lock(base / "lock", emu, series_only=series_only)
        root = base / "copy"
        write_copy(emu, root)
        if data.draw(st.booleans(), label="recorded first"):
            # Records known: files go to the shard of their series; else by path.
            assert verify_copy(lock, root).clean
        files = list(image_files(root))
        ops = data.draw(st.lists(st.sampled_from(OPS), min_size=len(files), max_size=len(files)))
        for index, (op, path) in enumerate(zip(ops, files, strict=True)):
            tamper(op, path, root, index)
        extras(root, data.draw(st.booleans()), data.draw(st.booleans()), data.draw(st.booleans()))
        level, sample, seed = data.draw(settings_of_a_run, label="level, sample, seed")
        keep = base / "state-before"
        snapshot(root, keep)
        one = verify_copy(lock, root, level=level, sample=sample, seed=seed, workers=2)
        recorded = records_of(root)
        for count in range(1, 8):
            restore(root, keep)  # every run starts from the same local state
            merged = sharded(lock, root, base / "run", count, level, sample, seed)
            assert verdict(merged) == verdict(one), count
            assert merged.facts["merged_from_shards"] == count
            # The merge wrote (and forgot) the records one process did.
            assert records_of(root) == recorded, count
        restore(root, keep)
        # The merge wrote what one process writes: the next pass agrees too.
        merged = sharded(lock, root, base / "run", 3, level, sample, seed)
        again_merged = sharded(lock, root, base / "run", 3, level, sample, seed)
        restore(root, keep)
        verify_copy(lock, root, level=level, sample=sample, seed=seed, workers=2)
        again_one = verify_copy(lock, root, level=level, sample=sample, seed=seed, workers=2)
        assert dataclasses.replace(again_merged, facts={}, started_at="", finished_at="") == (
            dataclasses.replace(again_one, facts={}, started_at="", finished_at="")
        )

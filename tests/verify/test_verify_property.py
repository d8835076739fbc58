"""Property: any set of random tamperings of a random corpus is reported exactly, at every
level (each tampering changes the stat key, so stat must see it too)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.verify.run import verify_copy
from tests.support.verify import (
    OLD_NS,
    flip_bit_keep_mtime,
    foreign_dicom,
    image_files,
    kinds,
    make_lock,
    rel,
    sop_of,
    truncate_half,
)

OPS = ("keep", "flip", "truncate", "delete", "rename", "duplicate", "fifo")
corpora = st.builds(
    CorpusSpec,
    seed=st.integers(0, 10_000),
    collections=st.just(1),
    patients=st.integers(1, 2),
    studies=st.just(1),
    series=st.integers(1, 2),
    images=st.integers(1, 3),
)


def write_copy(emu: Emulator, root: Path) -> None:
    for image in emu.corpus.images:
        series = emu.corpus.series_by_uid(image.series_uid)
        assert series is not None
        path = root / series.patient_id / image.series_uid / f"{image.sop_uid}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(emu.corpus.image_bytes(image.sop_uid))
        os.utime(path, ns=(OLD_NS, OLD_NS))


def apply(op: str, path: Path, root: Path, index: int) -> set[tuple[str, str, str]]:
    sop = sop_of(path)
    if op == "flip":
        flip_bit_keep_mtime(path)
        return {("modified", sop, rel(root, path))}
    if op == "truncate":
        truncate_half(path)
        return {("unreadable", sop, rel(root, path))}
    if op == "delete":
        path.unlink()
        return {("missing", sop, "")}
    if op == "rename":
        path.rename(root / f"renamed-{index}.dcm")
        return set()
    if op == "duplicate":
        second = root / "dups" / f"{index}.dcm"
        second.parent.mkdir(exist_ok=True)
        shutil.copy2(path, second)
        return {("duplicate", sop, "|".join(sorted([rel(root, path), rel(root, second)])))}
    if op == "fifo":
        path.unlink()
        os.mkfifo(path)
        return {("unreadable", sop, rel(root, path))}
    return set()


def extras(root: Path, foreign: bool, text_junk: bool, dcm_junk: bool) -> set[tuple[str, str, str]]:
    expected = set()
    if foreign:
        (root / "foreign.dcm").write_bytes(foreign_dicom())
        expected.add(("unexpected", sop_of(root / "foreign.dcm"), "foreign.dcm"))
    if text_junk:
        (root / "todo.txt").write_text("todo\n")
        expected.add(("unexpected", "", "todo.txt"))
    if dcm_junk:
        (root / "broken.dcm").write_bytes(b"DICM" * 50)
        expected.add(("unreadable", "", "broken.dcm"))
    return expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=corpora, data=st.data())
def test_any_random_tampering_is_reported_exactly(spec: CorpusSpec, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp, Emulator.from_spec(spec) as emu:
        base = Path(tmp)
        lock = make_lock(base / "lock", emu)
        root = base / "copy"
        write_copy(emu, root)
        assert verify_copy(lock, root).clean  # the first pass records every file
        files = list(image_files(root))
        ops = data.draw(st.lists(st.sampled_from(OPS), min_size=len(files), max_size=len(files)))
        expected: set[tuple[str, str, str]] = set()
        for index, (op, path) in enumerate(zip(ops, files, strict=True)):
            expected |= apply(op, path, root, index)
        expected |= extras(root, data.draw(st.booleans()), data.draw(st.booleans()),
                           data.draw(st.booleans()))  # fmt: skip
        for level in ("full", "quick", "stat"):
            report = verify_copy(lock, root, level=level)
            assert kinds(report) == expected, level
            assert report.clean == (not expected)

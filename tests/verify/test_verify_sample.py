"""--sample: a seeded random fraction of the locked images is hashed; every file's
presence is still checked; the report states the seed and what the sample proves."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.store.localstate import LocalState, stat_key
from nbia_audit.store.reader import read_lock
from nbia_audit.verify.expectation import load_expectation
from nbia_audit.verify.run import verify_copy
from nbia_audit.verify.sampling import in_sample, upper_bound_95
from tests.support.verify import (
    backdate,
    download_all,
    flip_bit_keep_mtime,
    image_files,
    make_lock,
    materialise,
    sop_of,
)

SPEC = CorpusSpec(seed=13, collections=1, patients=2, studies=1, series=2, images=5)  # 20


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("sample")
    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(base / "lock", emu)
        downloads = download_all(emu, base / "zips")

        def build(root: Path) -> Path:
            materialise(emu, downloads, root, "ours")
            backdate(root)
            return root

        yield lock, build(base / "pristine")


@pytest.fixture
def copy(made: tuple[Path, Path], tmp_path: Path) -> Path:
    """A clone after a first full pass recorded its files (as fetch would have)."""
    root = Path(shutil.copytree(made[1], tmp_path / "copy"))
    assert verify_copy(made[0], root).clean
    return root


def rot_silently(root: Path, target: Path) -> None:
    """Flip a bit, then record the file's new stat key as if it had always been so: rot
    beneath the file system, which moves no stat field."""
    flip_bit_keep_mtime(target)
    path = target.relative_to(root).as_posix()
    with LocalState(root) as state:
        old = state.get(path)
        assert old is not None
        k = stat_key(target)
        state.upsert(
            [
                dataclasses.replace(
                    old, fs_id=k.fs, inode=k.inode, size=k.size, mtime_ns=k.mtime_ns,
                    ctime_ns=k.ctime_ns,
                )
            ]
        )  # fmt: skip


def sampled(lock: Path, fraction: float, seed: int) -> frozenset[str]:
    """The locked images the sample of ``seed`` draws (each alone, by a keyed hash)."""
    images = read_lock(lock).images
    sops = [i.sop_uid for series in images.values() for i in series]
    return frozenset(sop for sop in sops if in_sample(sop, fraction, seed))


def some_series_drawn(lock: Path, fraction: float) -> tuple[int, frozenset[str]]:
    """A seed whose series sample draws some series but not all, and those series."""
    uids = list(load_expectation(lock).series)
    for seed in range(1, 100):
        chosen = frozenset(u for u in uids if in_sample(u, fraction, seed))
        if 0 < len(chosen) < len(uids):
            return seed, chosen
    raise AssertionError("no seed draws a proper subset")  # pragma: no cover


def test_a_clean_sample(made: tuple[Path, Path], copy: Path) -> None:
    lock = made[0]
    report = verify_copy(lock, copy, sample=0.25, seed=7)
    facts = report.facts
    n = len(sampled(lock, 0.25, 7))  # a Bernoulli draw: its size is the hash's to say
    assert 0 < n < 20
    assert report.clean
    assert facts["sample_seed"] == 7 and facts["sample_size"] == n and facts["sample_checked"] == n
    assert facts["hashed_md5"] == n and facts["present_only"] == 20 - n
    assert facts["sample_upper_bound_95"] == pytest.approx(upper_bound_95(n, 0), abs=1e-6)
    assert f"0 of {n} randomly sampled images corrupt" in str(facts["sample_statement"])
    again = verify_copy(lock, copy, sample=0.25, seed=7)
    assert again.facts["sample_checked"] == n and again.series == report.series


def test_a_fresh_seed_is_chosen_and_reported(made: tuple[Path, Path], copy: Path) -> None:
    report = verify_copy(made[0], copy, sample=0.1)
    assert isinstance(report.facts["sample_seed"], int)


def test_presence_is_checked_outside_the_sample(made: tuple[Path, Path], copy: Path) -> None:
    lock = made[0]
    chosen = sampled(lock, 0.25, 3)
    outside = next(p for p in image_files(copy) if sop_of(p) not in chosen)
    sop = sop_of(outside)
    outside.unlink()
    report = verify_copy(lock, copy, sample=0.25, seed=3)
    assert [(f.kind, f.sop_uid) for f in report.findings] == [("missing", sop)]


def test_silent_rot_outside_the_sample_is_not_seen_and_the_report_says_so(
    made: tuple[Path, Path], copy: Path
) -> None:
    lock = made[0]
    chosen = sampled(lock, 0.25, 3)
    outside = next(p for p in image_files(copy) if sop_of(p) not in chosen)
    rot_silently(copy, outside)
    report = verify_copy(lock, copy, sample=0.25, seed=3)
    assert report.clean  # the sample did not include it ...
    assert "only the sample" in str(report.facts["proof"])  # ... and says so
    assert verify_copy(lock, copy).findings[0].kind == "modified"


@pytest.mark.parametrize("level", ["full", "quick"])
def test_a_changed_file_is_hashed_whatever_the_sample(
    made: tuple[Path, Path], copy: Path, level: str
) -> None:
    """Files new or changed since the last pass are always hashed in full (issue 5)."""
    lock = made[0]
    target = next(image_files(copy))
    flip_bit_keep_mtime(target)  # ctime moves: the stat key changed
    expected = [("modified", sop_of(target), target.relative_to(copy).as_posix())]
    for seed in range(1, 6):
        report = verify_copy(lock, copy, level=level, sample=0.1, seed=seed)
        assert [(f.kind, f.sop_uid, f.path) for f in report.findings] == expected
        drawn = sampled(lock, 0.1, seed)
        in_draw = sop_of(target) in drawn
        assert report.facts["sample_failures"] == int(in_draw)  # the draw alone is counted
        assert report.facts["sample_checked"] == len(drawn)


def test_a_file_replaced_by_a_new_inode_is_hashed_whatever_the_sample(
    made: tuple[Path, Path], copy: Path
) -> None:
    lock = made[0]
    files = list(image_files(copy))
    replaced = files[0]
    data = bytearray(replaced.read_bytes())
    data[-100] ^= 0x10
    replaced.unlink()
    replaced.write_bytes(bytes(data))  # same path, new inode, no stat key in common
    moved = files[1].rename(copy / "moved-here.dcm")  # a path with no record: new
    moved.write_bytes(moved.read_bytes()[:-1] + b"\0")
    report = verify_copy(lock, copy, sample=0.1, seed=2)
    assert {(f.kind, f.path) for f in report.findings} == {
        ("modified", replaced.relative_to(copy).as_posix()),
        ("modified", "moved-here.dcm"),
    }


def test_a_corrupt_image_in_the_sample_is_found_and_counted(
    made: tuple[Path, Path], copy: Path
) -> None:
    lock = made[0]
    chosen = sampled(lock, 0.25, 3)
    n = len(chosen)
    inside = next(p for p in image_files(copy) if sop_of(p) in chosen)
    flip_bit_keep_mtime(inside)
    for level in ("full", "quick"):
        report = verify_copy(lock, copy, level=level, sample=0.25, seed=3)
        assert [f.kind for f in report.findings] == ["modified"]
        assert report.facts["sample_failures"] == 1 and report.facts["sample_checked"] == n
        assert report.facts["sample_upper_bound_95"] == pytest.approx(
            upper_bound_95(n, 1), abs=1e-6
        )


def test_sample_by_series_with_a_text_lock(made: tuple[Path, Path], copy: Path) -> None:
    alone = copy.parent / "alone" / "dataset.lock"
    alone.parent.mkdir()
    shutil.copy2(made[0], alone)
    seed, chosen = some_series_drawn(alone, 0.5)
    report = verify_copy(alone, copy, sample=0.5, seed=seed)
    assert report.clean
    assert report.facts["sample_unit"] == "series"
    assert report.facts["sample_size"] == report.facts["sample_checked"] == len(chosen)


def test_stat_with_sample_is_refused(made: tuple[Path, Path], copy: Path) -> None:
    with pytest.raises(ValueError, match="stat level hashes none"):
        verify_copy(made[0], copy, level="stat", sample=0.5)


def test_a_changed_file_of_an_unsampled_series_is_judged_with_a_text_lock(
    made: tuple[Path, Path], copy: Path
) -> None:
    """With series hashes only, the changed file's series hash is recomputed, its other
    files counting with the MD5s their last pass recorded."""
    alone = copy.parent / "alone" / "dataset.lock"
    alone.parent.mkdir()
    shutil.copy2(made[0], alone)
    seed, chosen = some_series_drawn(alone, 0.5)
    outside = sorted(set(load_expectation(alone).series) - chosen)[0]
    target = next(p for p in image_files(copy) if outside in p.parts)
    flip_bit_keep_mtime(target)
    for _ in range(2):  # found when hashed, and again from its record when unchanged
        report = verify_copy(alone, copy, sample=0.5, seed=seed)
        assert [(f.kind, f.series_uid) for f in report.findings] == [("modified", outside)]
        assert report.facts["sample_checked"] == len(chosen)
        assert report.facts["sample_failures"] == 0

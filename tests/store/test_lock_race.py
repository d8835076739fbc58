"""`lock` while the archive moves: a provable new pair, or the old pair untouched.

The archive is the real emulator over loopback; the race is made deterministic by replacing
an image at an exact point of the conversation (right after the series hash was served,
before its images' MD5s are asked), through a thin view that delegates every call to the
real client and only adds that step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.lock.pin import SETTLE_ROUNDS
from nbia_audit.lock.run import lock_dataset
from nbia_audit.merkle import series_hash
from nbia_audit.store.reader import read_lock
from tests.support.verify import client_for

SPEC = CorpusSpec(seed=31, collections=1, patients=2, studies=1, series=2, images=3)


class MovingArchive:
    """The real archive view; after serving ``target``'s series hash, the archive replaces
    one of its images, ``times`` times (forever with None)."""

    def __init__(self, view: ArchiveView, emu: Emulator, target: str, times: int | None) -> None:
        self._view, self._emu, self._target, self._left = view, emu, target, times
        self.moves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)

    def md5_hierarchy(self, **where: str | None) -> str:
        answer = self._view.md5_hierarchy(**where)
        if where.get("series_uid") == self._target and self._left != 0:
            self._emu.replace_image(self._emu.corpus.images_of(self._target)[0].sop_uid)
            self.moves += 1
            if self._left is not None:
                self._left -= 1
        return answer


def spec_file(tmp_path: Path, emu: Emulator) -> Path:
    spec = tmp_path / "dataset.yaml"
    collection = emu.corpus.collections[0].name
    spec.write_text(
        f"name: race\nserver: {emu.base_url}\nselect:\n  - collection: {collection}\n",
        encoding="utf-8",
    )
    return spec


def current_hash(emu: Emulator, series_uid: str) -> str:
    return series_hash(i.stored_md5 for i in emu.corpus.images_of(series_uid))


def test_a_series_replaced_once_while_locked_settles_on_the_new_content(
    tmp_path: Path, emu: Emulator
) -> None:
    target = sorted(s.series_uid for s in emu.corpus.series)[0]
    with client_for(emu) as client:
        archive = MovingArchive(ArchiveView(client), emu, target, times=1)
        result = lock_dataset(spec_file(tmp_path, emu), archive)
    assert archive.moves == 1 and result.written and not result.unsettled
    lock = read_lock(result.lock_path)  # the pair proves itself
    pinned = {s.series_uid: s.series_hash for s in lock.series}
    assert pinned[target] == current_hash(emu, target)
    assert not [p for p in lock.problems if p.kind == "series-hash-mismatch"]


def test_a_series_that_never_settles_leaves_the_old_pair_untouched(
    tmp_path: Path, emu: Emulator
) -> None:
    spec = spec_file(tmp_path, emu)
    with client_for(emu) as client:
        first = lock_dataset(spec, ArchiveView(client))
    before = (first.lock_path.read_bytes(), first.lock_path.with_suffix(".lock.db").read_bytes())
    target = sorted(s.series_uid for s in emu.corpus.series)[1]
    with client_for(emu) as client:
        archive = MovingArchive(ArchiveView(client), emu, target, times=None)
        result = lock_dataset(spec, archive, upgrade=True)
    assert result.unsettled == (target,) and not result.written
    assert archive.moves == SETTLE_ROUNDS + 1  # asked once, then once per settling round
    after = (first.lock_path.read_bytes(), first.lock_path.with_suffix(".lock.db").read_bytes())
    assert after == before
    read_lock(first.lock_path)  # still the old, provable pair


def test_a_first_lock_that_never_settles_writes_nothing(tmp_path: Path, emu: Emulator) -> None:
    spec = spec_file(tmp_path, emu)
    target = sorted(s.series_uid for s in emu.corpus.series)[0]
    with client_for(emu) as client:
        result = lock_dataset(spec, MovingArchive(ArchiveView(client), emu, target, times=None))
    assert result.unsettled == (target,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.yaml"]


def test_problems_are_computed_afresh_on_every_lock(tmp_path: Path, emu: Emulator) -> None:
    """A problem recorded by one lock does not survive a re-lock once its cause is gone."""
    import dataclasses

    from tests.support.lock_tools import rewrite_pair

    spec = spec_file(tmp_path, emu)
    with client_for(emu) as client:
        first = lock_dataset(spec, ArchiveView(client))
    # Pretend the archive listed a wrong image count when the lock was made: the pin's
    # count disagrees with its images, which the lock records as a problem.
    target = sorted(s.series_uid for s in emu.corpus.series)[0]
    rewrite_pair(
        first.lock_path,
        lambda s: dataclasses.replace(s, image_count=99) if s.series_uid == target else s,
    )
    # Re-locking after a spec change (pins kept) judges the kept pins against the listing now.
    spec.write_text(spec.read_text(encoding="utf-8") + "description: edited\n", encoding="utf-8")
    with client_for(emu) as client:
        again = lock_dataset(spec, ArchiveView(client))
    assert again.written
    assert not [p for p in again.problems if p.kind == "image-count-mismatch"]
    assert not [p for p in read_lock(again.lock_path).problems if p.series_uid == target]


class InterleavedArchive:
    """The real archive view; just before the run would write its lock (when it asks the
    licenses, its last request), another `nbia-audit lock` process runs to completion."""

    def __init__(self, view: ArchiveView, other_run: list[str], emu: Emulator) -> None:
        self._view, self._other_run, self._emu = view, other_run, emu
        self.other_exit: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)

    def licenses(self) -> Any:
        import subprocess

        # Upstream changes again, so the other run's lock differs from this run's.
        last = sorted(s.series_uid for s in self._emu.corpus.series)[-1]
        self._emu.replace_image(self._emu.corpus.images_of(last)[0].sop_uid)
        self.other_exit = subprocess.run(self._other_run, capture_output=True).returncode
        return self._view.licenses()


def test_a_second_lock_does_not_overwrite_a_pair_written_after_it_read(
    tmp_path: Path, emu: Emulator
) -> None:
    import sys

    from nbia_audit.store.textlock import ConcurrentLockWrite

    spec = spec_file(tmp_path, emu)
    with client_for(emu) as client:
        first = lock_dataset(spec, ArchiveView(client))
    # Upstream changes, and two runs re-lock: the other one commits while this one works.
    emu.replace_image(
        emu.corpus.images_of(sorted(s.series_uid for s in emu.corpus.series)[0])[0].sop_uid
    )
    other = [sys.executable, "-m", "nbia_audit", "lock", str(spec), "--upgrade", "-q"]
    with client_for(emu) as client:
        archive = InterleavedArchive(ArchiveView(client), other, emu)
        with pytest.raises(ConcurrentLockWrite, match="another run wrote .*re-run"):
            lock_dataset(spec, archive, upgrade=True)
    assert archive.other_exit == 0
    written = read_lock(first.lock_path)  # the other run's pair, intact and provable
    assert written.header.root_digest != first.header.root_digest
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["dataset.lock", "dataset.lock.db", "dataset.yaml"]

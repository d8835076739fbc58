"""The expectation's images live in a per-run SQLite work database, not in a dict: point
lookups answer exactly what the lock pins, from any thread, and the private folder holding
it is gone when the run ends, however it ends."""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nbia_audit.emulator import CorpusSpec
from nbia_audit.merkle import normalise_archive_md5
from nbia_audit.store.reader import read_lock
from nbia_audit.verify.expectation import ExpectedImage, _image, _row, load_expectation
from nbia_audit.verify.run import verify_copy

SPEC = CorpusSpec(seed=21, collections=1, patients=2, studies=1, series=2, images=3)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``tempfile`` puts this test's temporary folders (to see what is left behind)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_lookups_answer_what_the_lock_pins(lock: Path) -> None:
    pinned = read_lock(lock).images
    with load_expectation(lock) as exp:
        total = 0
        for series_uid, images in pinned.items():
            expected = [
                (i.sop_uid, ExpectedImage(series_uid, i.archive_md5, i.size)) for i in images
            ]
            assert exp.images_of(series_uid) == sorted(expected)
            for image in images:
                total += 1
                assert exp.image(image.sop_uid) == ExpectedImage(
                    series_uid, image.archive_md5, image.size
                )
                assert exp.has_image(image.sop_uid) and image.sop_uid in exp.images
                md5 = normalise_archive_md5(image.archive_md5)
                assert md5 is not None and exp.image_with_md5(md5) == image.sop_uid
        assert exp.pinned_image_count() == len(exp.images) == total == 12
        assert exp.image("1.2.999") is None and not exp.has_image("")
        assert exp.image_with_md5("f" * 32) is None and exp.image_with_md5("not hex") is None
        assert exp.images_of("1.2.999") == []
        with pytest.raises(KeyError):
            exp.images["1.2.999"]


def test_worker_threads_asking_first_load_once_and_agree(lock: Path, private_tmp: Path) -> None:
    pinned = read_lock(lock).images
    wanted = [
        (normalise_archive_md5(i.archive_md5) or "", i.sop_uid)
        for images in pinned.values()
        for i in images
    ]
    with load_expectation(lock) as exp:
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda pair: exp.image_with_md5(pair[0]), wanted * 4))
        assert found == [sop for _, sop in wanted] * 4
        assert len(list(private_tmp.iterdir())) == 1  # one work database, however many asked
    assert list(private_tmp.iterdir()) == []


def test_a_run_leaves_no_temporary_folder_behind(
    lock: Path, pristine: Path, tmp_path: Path, private_tmp: Path
) -> None:
    root = Path(shutil.copytree(pristine, tmp_path / "copy"))
    assert verify_copy(lock, root).clean
    assert list(private_tmp.iterdir()) == []

    def interrupt(stage: str, done: int, total: int) -> None:
        raise KeyboardInterrupt  # the user stops it once every file was read

    with pytest.raises(KeyboardInterrupt):
        verify_copy(lock, root, on_progress=interrupt)
    assert list(private_tmp.iterdir()) == []


@settings(deadline=None, max_examples=300)
@example("ABCDEF" + "0" * 26)
@example(" " + "a" * 31)
@example("0" * 31)
@given(
    st.none()
    | st.text(alphabet="0123456789abcdefABCDEF \tg\u00e9", max_size=34)
    | st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
)
def test_archive_md5s_are_kept_verbatim_and_indexed_normalised(archive: str | None) -> None:
    """16 bytes plus the verbatim string only where it differs: the same information."""
    sop, series, md5, verbatim, size = _row("1.2", "1.2.3", archive, 7)
    assert _image(series, md5, verbatim, size) == ExpectedImage("1.2", archive, 7)
    normal = normalise_archive_md5(archive)
    assert (md5.hex() if md5 is not None else None) == normal
    assert verbatim is None or verbatim != normal  # the common string is not stored twice

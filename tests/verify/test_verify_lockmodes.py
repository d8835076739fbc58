"""verify with less than a full lock: the text lock alone, a series-only lock; and the
archive's odd MD5 strings (short CTP values, NULL), and files only their content identifies.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pydicom
import pydicom.uid
import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.errors import LockNotFound, StoreError
from nbia_audit.verify.run import verify_copy
from tests.support.verify import (
    Download,
    client_for,
    download_all,
    flip_bit_keep_mtime,
    image_files,
    kinds,
    make_lock,
    materialise,
    rel,
    sop_of,
    truncate_half,
)

SPEC = CorpusSpec(seed=5, collections=1, patients=2, studies=1, series=2, images=3)


@pytest.fixture(scope="module")
def full_lock(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lock(tmp_path_factory.mktemp("full"), emu)


@pytest.fixture(scope="module", params=["text-only", "series-only"])
def hash_lock(
    request: pytest.FixtureRequest,
    emu: Emulator,
    full_lock: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A lock that pins series by hash only: the text lock without its database (a reader
    with the paper's supplement), or a ``--series-only`` lock."""
    if request.param == "series-only":
        return make_lock(tmp_path_factory.mktemp("series-only"), emu, series_only=True)
    alone = tmp_path_factory.mktemp("text-only") / "dataset.lock"
    shutil.copy2(full_lock, alone)
    return alone


@pytest.fixture
def copy(emu: Emulator, downloads: list[Download], tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    materialise(emu, downloads, root, "retriever-classic")
    return root


def extra_image_of_a_locked_series(source: Path) -> Path:
    """A new image (new SOPInstanceUID) beside ``source``, claiming its series."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(source)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    target = source.with_name("extra.dcm")
    ds.save_as(target)
    return target


def series_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def test_hash_only_lock_verifies_a_clean_copy(hash_lock: Path, copy: Path) -> None:
    report = verify_copy(hash_lock, copy)
    assert report.clean, report.findings
    assert report.facts["series_by_series_hash"] == 4 and report.facts["series_by_image_md5"] == 0
    assert "exact when the archive stored full 32-character" in str(
        report.facts["series_hash_note"]
    )
    assert all("series hash from their 32-character MD5s" in s.detail for s in report.series)
    for level in ("quick", "stat"):
        assert verify_copy(hash_lock, copy, level=level).clean


def test_hash_only_lock_names_the_series_of_every_tampering(hash_lock: Path, copy: Path) -> None:
    files = list(image_files(copy))  # 4 series x 3 images, sorted, so series by series
    flipped, deleted, truncated, beside = files[0], files[3], files[6], files[9]
    flip_bit_keep_mtime(flipped)
    deleted.unlink()
    truncate_half(truncated)
    extra_image_of_a_locked_series(beside)
    report = verify_copy(hash_lock, copy)
    # Series-level findings carry no SOP and no path: a hash-only lock cannot name the
    # image. A truncated file is named: its own structure shows it.
    assert {(f.kind, f.series_uid, f.sop_uid, f.path) for f in report.findings} == {
        ("modified", series_of(flipped), "", ""),
        ("missing", series_of(files[4]), "", ""),
        ("unreadable", series_of(truncated), sop_of(truncated), rel(copy, truncated)),
        ("unexpected", series_of(beside), "", ""),
    }
    assert [s.status for s in report.series] == ["problem"] * 4


def test_hash_only_lock_reports_a_changed_image_as_modified(hash_lock: Path, copy: Path) -> None:
    flipped = next(image_files(copy))
    flip_bit_keep_mtime(flipped)
    (finding,) = verify_copy(hash_lock, copy).findings
    assert finding.kind == "modified" and finding.sop_uid == "" and finding.series_uid
    assert "cannot name the image" in finding.detail


def test_full_lock_names_the_extra_image(full_lock: Path, copy: Path) -> None:
    extra = extra_image_of_a_locked_series(next(image_files(copy)))
    (finding,) = verify_copy(full_lock, copy).findings
    assert (finding.kind, finding.path) == ("unexpected", rel(copy, extra))
    assert "of a locked series" in finding.detail


def test_a_database_from_another_lock_is_refused(full_lock: Path, tmp_path: Path) -> None:
    lock = tmp_path / "dataset.lock"
    text = full_lock.read_text().replace(
        "resolved-at = ", 'resolved-at = "2000-01-01T00:00:00Z"\n#'
    )
    lock.write_text(text)
    shutil.copy2(full_lock.with_name("dataset.lock.db"), tmp_path / "dataset.lock.db")
    report = verify_copy(lock, tmp_path)
    rejected = [f for f in report.findings if f.kind == "lock-database-rejected"]
    assert len(rejected) == 1 and "belongs to another lock" in rejected[0].detail
    assert report.facts["lock_source"] == "text lock" and not report.clean


def test_missing_lock_and_missing_copy_are_errors(full_lock: Path, tmp_path: Path) -> None:
    with pytest.raises(LockNotFound):
        verify_copy(tmp_path / "nope.lock", tmp_path)
    with pytest.raises(StoreError, match="no such directory"):
        verify_copy(full_lock, tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        verify_copy(full_lock, tmp_path / "file")


def test_short_ctp_md5_strings(tmp_path: Path) -> None:
    """The archive stores some MD5s without leading zeros (protocol §3). With the database
    they are compared after zero-padding; with the text lock alone the series hash built
    from unpadded strings is recognised."""
    spec = CorpusSpec(seed=8, collections=1, patients=2, studies=1, series=2, images=4,
                      unpadded_md5=True)  # fmt: skip
    with Emulator.from_spec(spec) as emu:
        short = [i for i in emu.corpus.images if i.stored_md5 and len(i.stored_md5) < 32]
        assert short, "the seed must give at least one short MD5"
        lock = make_lock(tmp_path / "lock", emu)
        root = tmp_path / "copy"
        materialise(emu, download_all(emu, tmp_path / "zips"), root, "ours")
    report = verify_copy(lock, root)
    assert report.clean and report.facts["short_archive_md5"] == len(short)
    alone = tmp_path / "alone" / "dataset.lock"
    alone.parent.mkdir()
    shutil.copy2(lock, alone)
    text_only = verify_copy(alone, root)
    assert text_only.clean
    short_series = {i.series_uid for i in short}
    for status in text_only.series:
        assert ("CTP-style unpadded" in status.detail) == (status.series_uid in short_series)


def test_null_archive_md5_is_present_but_unprovable(tmp_path: Path) -> None:
    with Emulator.from_spec(SPEC) as emu:
        victim = emu.corpus.images[0]
        emu.set_stored_md5(victim.sop_uid, None)
        lock = make_lock(tmp_path / "lock", emu)
        root = tmp_path / "copy"
        materialise(emu, download_all(emu, tmp_path / "zips"), root, "ours")
    report = verify_copy(lock, root)
    # Nothing can prove those bytes, whatever they are: never clean, and the series says why.
    assert not report.clean and not report.complete and not report.findings
    assert report.facts["unprovable_images"] == 1
    status = next(s for s in report.series if s.series_uid == victim.series_uid)
    assert status.status == "not-checked" and "cannot be proven" in status.detail
    # Its hash cannot be recomputed from what was proven: the detail must not claim it was.
    assert "series hash not recomputed (not every image was hashed)" in status.detail
    flipped = next(p for p in image_files(root) if sop_of(p) == victim.sop_uid)
    data = bytearray(flipped.read_bytes())
    data[-10] ^= 1
    flipped.write_bytes(bytes(data))
    assert not verify_copy(lock, root).clean  # a changed unprovable image is not clean either


def test_a_file_whose_header_cannot_be_read_is_matched_by_content(tmp_path: Path) -> None:
    """An archived file without the DICOM preamble (pydicom refuses it without force) is
    still the locked image: its MD5 says so."""
    with Emulator.from_spec(SPEC) as emu:
        victim = emu.corpus.images[0]
        bare = emu.corpus.image_bytes(victim.sop_uid)[132:]  # preamble and 'DICM' removed
        emu.replace_image(victim.sop_uid, bare)
        lock = make_lock(tmp_path / "lock", emu)
        root = tmp_path / "copy"
        materialise(emu, download_all(emu, tmp_path / "zips"), root, "flat")
    assert verify_copy(lock, root).clean
    bare_file = next(p for p in image_files(root) if p.read_bytes() == bare)
    bare_file.rename(root / "renamed")
    assert verify_copy(lock, root).clean
    (root / "renamed").write_bytes(bare[:-1] + b"\0")
    report = verify_copy(lock, root)
    # The last pass recorded the image at this path: one finding, named by image.
    assert kinds(report) == {("unreadable", victim.sop_uid, "renamed")}


def test_download_is_real(emu: Emulator, tmp_path: Path) -> None:
    """The copies above come through the real client: the ZIP has the archive's CSV."""
    with client_for(emu) as client:
        got = client.download_series(emu.corpus.series[0].series_uid, tmp_path / "s.zip")
    assert got.has_md5_csv and len(got.image_entries) == 3


def test_an_archive_md5_mix_up_does_not_confuse_identity(tmp_path: Path) -> None:
    """The archive stores image X's MD5 as image Y's: a file is identified by content only
    when its header also names the image, so Y's file stays Y, and X is modified."""
    with Emulator.from_spec(SPEC) as emu:
        x, y = emu.corpus.images[0], emu.corpus.images[1]
        emu.set_stored_md5(x.sop_uid, y.stored_md5)
        lock = make_lock(tmp_path / "lock", emu)
        root = tmp_path / "copy"
        materialise(emu, download_all(emu, tmp_path / "zips"), root, "flat")
    report = verify_copy(lock, root)
    assert {(f.kind, f.sop_uid) for f in report.findings} == {("modified", x.sop_uid)}


def test_hash_only_lock_reports_a_duplicate_image(hash_lock: Path, copy: Path) -> None:
    first = next(image_files(copy))
    shutil.copy2(first, first.with_name("again.dcm"))
    report = verify_copy(hash_lock, copy)
    duplicates = [f for f in report.findings if f.kind == "duplicate"]
    assert [(f.series_uid, f.sop_uid) for f in duplicates] == [(series_of(first), sop_of(first))]
    assert not report.clean


def test_hash_only_lock_with_a_sample_judges_the_rest_by_their_recorded_md5s(
    hash_lock: Path, copy: Path
) -> None:
    an_hour_ago = time.time_ns() - 3600 * 10**9  # so the records are not racily clean
    for path in image_files(copy):
        os.utime(path, ns=(an_hour_ago, an_hour_ago))
    assert verify_copy(hash_lock, copy).clean  # records every file's MD5
    report = verify_copy(hash_lock, copy, sample=0.25, seed=3)
    outside = [s for s in report.series if "count only" in s.detail]
    assert len(outside) == 3 and all(s.status == "ok" for s in outside), report.series
    assert report.clean and report.facts["hashed_md5"] == 3  # one series of 4: its 3 images
    # One image gone from every series: outside the sample the series hash is recomputed
    # from the MD5s recorded at the last pass, and each series is short of an image.
    files = list(image_files(copy))  # 4 series x 3 images, sorted, so series by series
    series = {series_of(files[i]) for i in (0, 3, 6, 9)}
    for i in (0, 3, 6, 9):
        files[i].unlink()
    report = verify_copy(hash_lock, copy, sample=0.25, seed=3)
    assert {f.series_uid for f in report.findings if f.kind == "missing"} == series


def test_a_series_missing_an_image_claims_no_recomputed_hash(full_lock: Path, copy: Path) -> None:
    victim = next(image_files(copy))
    uid = series_of(victim)
    victim.unlink()
    status = {s.series_uid: s for s in verify_copy(full_lock, copy).series}[uid]
    assert status.status == "problem"
    assert "series hash not recomputed (not every image was hashed)" in status.detail

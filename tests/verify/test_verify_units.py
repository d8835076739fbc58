"""The pieces under verify: the fast DICOM header reader, sidecar names, sample statistics."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pydicom.data
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.dicom.header import NotDicomError, read_identity
from nbia_audit.dicom.scan import scan_identity, truncation
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.store.statkey import StatKey
from nbia_audit.verify.memo import settled
from nbia_audit.verify.records import Racy, Rec
from nbia_audit.verify.sampling import Sample, in_sample, sample_statement, upper_bound_95
from nbia_audit.verify.sidecars import dicom_expected, sidecar_tool
from nbia_audit.verify.walk import Blocked, FileEntry

TEST_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm"))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_fast_identity_never_disagrees_with_pydicom(path: Path) -> None:
    """The fast reader answers for the common encodings and defers on everything else;
    when it answers, it says exactly what pydicom says."""
    fast = scan_identity(path.read_bytes()[: 64 * 1024])
    if fast is None:
        return
    assert fast == read_identity(path)


def test_fast_identity_covers_the_encodings_nbia_serves() -> None:
    names = {p.name: scan_identity(p.read_bytes()) for p in TEST_FILES}
    for common in ("CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"):
        assert names[common] is not None, common
    for deferred in ("MR_small_bigendian.dcm", "image_dfl.dcm", "no_meta.dcm"):
        assert names[deferred] is None, deferred


def test_fast_identity_of_emulator_images_and_short_heads() -> None:
    emu = Emulator.from_spec(CorpusSpec(seed=1, collections=1, patients=1, studies=1, series=1))
    for image in emu.corpus.images:
        data = emu.corpus.image_bytes(image.sop_uid)
        identity = scan_identity(data)
        assert identity is not None and identity.sop_uid == image.sop_uid
        assert identity.series_uid == image.series_uid
        assert scan_identity(data[:200]) is None  # too short to decide: ask pydicom
    assert scan_identity(b"") is None and scan_identity(b"\0" * 132) is None


def test_truncation_is_found_in_pixel_data_and_sequences(tmp_path: Path) -> None:
    by_name = {p.name: p for p in TEST_FILES}
    assert "7FE0,0010" in (truncation(str(by_name["MR_truncated.dcm"])) or "")
    assert "needs" in (truncation(str(by_name["rtplan_truncated.dcm"])) or "")
    for whole in TEST_FILES:
        if "truncated" not in whole.name:
            assert truncation(str(whole)) is None, whole.name
    cut = tmp_path / "cut.dcm"
    data = by_name["JPEG2000.dcm"].read_bytes()
    cut.write_bytes(data[: len(data) - 10])  # inside an encapsulated fragment
    assert truncation(str(cut)) is not None
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello")
    assert truncation(str(junk)) is None  # not DICOM at all: not "truncated"
    with pytest.raises(NotDicomError):
        read_identity(junk)


@pytest.mark.parametrize(
    "rel, tool",
    [
        ("md5hashes.csv", "MD5 list"),
        ("EMU/P1/1.2/3.4/md5hashes.csv", "MD5 list"),
        ("EMU/LICENSE", "license"),
        ("metadata.csv", "metadata"),
        ("metadata/1.2.3.json", "metadata cache"),
        ("out/metadata/manifest-metadata.csv", "metadata cache"),
        ("nbia_guest.json", "token cache"),
        ("progress.log", "log"),
        ("manifest-1.tcia", "NBIA manifest"),
        ("x/manifest.s5cmd", "IDC manifest"),
        ("a/.DS_Store", "operating-system"),
        ("a/._1-01.dcm", "operating-system"),
        ("Thumbs.db", "operating-system"),
        ("nbia-emulator.json", "emulator"),
    ],
)
def test_known_sidecars(rel: str, tool: str) -> None:
    assert tool in (sidecar_tool(rel) or "")


@pytest.mark.parametrize(
    "rel", ["notes.txt", "a/b/data.json", "a/progress.log", "a/1-01.dcm", "metadata/x.dcm"]
)
def test_everything_else_is_not_a_sidecar(rel: str) -> None:
    assert sidecar_tool(rel) is None


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("a/1-01.dcm", True),
        ("a/IMG.DCM", True),
        ("00000001", True),
        ("1.2.840.113619.2.55.3.604688119", True),
        ("scan.dicom", True),
        ("notes.txt", False),
        ("mask.nii.gz", False),
        ("report.pdf", False),
    ],
)
def test_dicom_expected_by_name(rel: str, expected: bool) -> None:
    assert dicom_expected(rel) is expected


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_upper_bound_is_the_exact_clopper_pearson_bound(n: int, data: st.DataObject) -> None:
    failures = data.draw(st.integers(0, n))
    bound = upper_bound_95(n, failures)
    if failures == n:
        assert bound == 1.0
        return
    assert failures / n < bound <= 1.0
    assert _binomial_cdf(failures, n, bound) == pytest.approx(0.05, abs=1e-6)


def test_upper_bound_with_no_failures_is_the_rule_of_three() -> None:
    assert upper_bound_95(1000, 0) == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert upper_bound_95(1000, 0) == pytest.approx(3 / 1000, rel=0.01)
    assert upper_bound_95(0, 0) == 1.0


def test_samples_are_a_pure_function_of_seed_and_unit() -> None:
    """Each unit is drawn alone, by a keyed hash below the fraction: any process decides the
    same, whatever else it saw and in whatever order (a merge of shards needs no list)."""
    units = [f"1.2.{i}" for i in range(10_000)]
    first = {u for u in units if in_sample(u, 0.05, 11)}
    assert first == {u for u in reversed(units) if in_sample(u, 0.05, 11)}
    assert 400 < len(first) < 600  # Binomial(10 000, 0.05): 500, sd 22
    assert first != {u for u in units if in_sample(u, 0.05, 12)}
    # A larger fraction of the same seed draws a superset; the whole fraction draws all.
    assert first <= {u for u in units if in_sample(u, 0.2, 11)}
    assert all(in_sample(u, 1.0, 11) for u in units)
    assert ("1.2.7" in Sample(0.05, 11)) == in_sample("1.2.7", 0.05, 11)
    assert in_sample("1.2.\udc80", 0.5, 1) in (True, False)  # any str, even undecodable


def test_sample_statement() -> None:
    text = sample_statement("image", 300, 10_000, 0)
    assert "0 of 300 randomly sampled images corrupt" in text and "95% confidence" in text
    assert "no sampling error" in sample_statement("image", 10, 10, 1)


def _rec(mtime_ns: int, checked_at: str) -> Rec:
    key = StatKey(1, 2, 3, mtime_ns, 4)
    return Rec("a.dcm", "1.2", "1.2.3", key, "0" * 32, "", checked_at, checked_at)


CHECKED_AT = "2026-03-01T12:00:10.000000Z"
CHECKED_NS = 1_772_366_410 * 1_000_000_000  # the same instant: date -u -d 2026-03-01T12:00:10Z +%s


@pytest.mark.parametrize(
    ("mtime_ns", "racy"),
    [
        # Whole-second mtimes (a file system that keeps seconds, or FAT's two): a write up to
        # 2 s before the check may hide behind the same mtime.
        (CHECKED_NS - 1_000_000_000, True),
        (CHECKED_NS - 2_000_000_000, True),
        (CHECKED_NS - 3_000_000_000, False),
        # Nanosecond mtimes: the kernel's clock still ticks coarsely, 0.1 s is the window.
        (CHECKED_NS - 50_000_001, True),
        (CHECKED_NS - 100_000_000 + 1, True),
        (CHECKED_NS - 100_000_001, False),
        (CHECKED_NS - 1_500_000_001, False),
        (CHECKED_NS + 7, True),  # written after the check
    ],
)
def test_racily_clean_window(mtime_ns: int, racy: bool) -> None:
    assert Racy()(_rec(mtime_ns, CHECKED_AT)) is racy


def test_an_unreadable_check_time_never_trusts_the_stat_key() -> None:
    assert Racy()(_rec(1, "not a time")) is True


def _entry(mtime_ns: int) -> FileEntry:
    return FileEntry("a.dcm", "/copy/a.dcm", StatKey(1, 2, 3, mtime_ns, mtime_ns))


STARTED = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)  # = CHECKED_NS


@pytest.mark.parametrize(
    ("mtime_ns", "remembered"),
    [
        (CHECKED_NS - 2_000_000_001, True),
        (CHECKED_NS - 2_000_000_000, False),  # within the 2 s tick of the pass's start
        (CHECKED_NS - 1, False),
        (CHECKED_NS + 5_000_000_000, False),  # written after the pass started
    ],
)
def test_a_stat_pass_is_remembered_only_when_no_file_changed_within_a_tick(
    mtime_ns: int, remembered: bool
) -> None:
    old = _entry(CHECKED_NS - 60_000_000_000)
    assert settled([old, _entry(mtime_ns)], STARTED) is remembered
    assert settled([old, Blocked("fifo", "a FIFO", io_error=False)], STARTED)

"""The series ZIP check on hand-made ZIPs: hostile names write nothing, every lie is caught."""

from __future__ import annotations

import hashlib
import io
import stat
import uuid
import zipfile
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.fetch.zipcheck import SeriesExpectation, check_series_zip
from nbia_audit.merkle import series_hash

CORPUS = Emulator.from_spec(
    CorpusSpec(seed=4, collections=1, patients=1, studies=1, series=1)
).corpus
SERIES = CORPUS.series[0]
IMAGES = CORPUS.images_of(SERIES.series_uid)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def entries(csv_md5: dict[str, str | None] | None = None) -> list[tuple[str, bytes]]:
    """The images as NBIA names them, then md5hashes.csv (``csv_md5`` overrides values)."""
    out = [(f"{n:08d}.dcm", CORPUS.image_bytes(i.sop_uid)) for n, i in enumerate(IMAGES, 1)]
    values = {name: md5(data) for name, data in out}
    values.update(csv_md5 or {})
    rows = "".join(f"{name},{value or ''}\n" for name, value in values.items())
    return [*out, ("md5hashes.csv", f"Filename,MD5Hash\n{rows}".encode())]


def write_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def expectation(**changes: object) -> SeriesExpectation:
    pinned = {i.sop_uid: md5(CORPUS.image_bytes(i.sop_uid)) for i in IMAGES}
    values: dict[str, object] = {
        "series_uid": SERIES.series_uid,
        "series_hash": series_hash(pinned.values()),
        "image_count": len(IMAGES),
        "archive_objects": len(IMAGES),
        "pinned": pinned,
        "max_bytes": 10_000_000,
    }
    values.update(changes)
    return SeriesExpectation(**values)  # type: ignore[arg-type]


def run(tmp_path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]], **changes: object):
    workdir = tmp_path / "work"
    workdir.mkdir()
    zip_path = write_zip(tmp_path / "series.zip", members)
    return check_series_zip(zip_path, expectation(**changes), workdir), workdir


def test_a_true_zip_is_accepted_and_extracted_under_our_own_names(tmp_path: Path) -> None:
    check, workdir = run(tmp_path, entries())  # type: ignore[arg-type]
    assert check.ok, check.problems
    assert {i.sop_uid for i in check.images} == {i.sop_uid for i in IMAGES}
    assert sorted(p.name for p in workdir.iterdir()) == ["000001.dcm", "000002.dcm", "000003.dcm"]
    for image in check.images:
        assert md5(image.temp_path.read_bytes()) == image.md5
        assert image.size == len(CORPUS.image_bytes(image.sop_uid))


def symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("hostile", "why"),
    [
        ("../escaped.dcm", "'..'"),
        ("sub/../../escaped.dcm", "'..'"),
        ("/tmp/nbia-audit-escaped-{id}.dcm", "absolute"),
        ("C:\\escaped.dcm", "absolute"),
        ("..\\escaped.dcm", "'..'"),
        ("deeper/escaped.dcm", "folder path"),
        ("folder/", "folder entry"),
        ("bell\x07.dcm", "control"),
    ],
)
def test_hostile_member_names_write_nothing_and_fail(
    tmp_path: Path, hostile: str, why: str
) -> None:
    name = hostile.format(id=uuid.uuid4().hex)
    members = entries()
    image_name, data = members[0]
    members[0] = (name, data)
    members[-1] = ("md5hashes.csv", members[-1][1].replace(image_name.encode(), name.encode()))
    check, workdir = run(tmp_path, members)  # type: ignore[arg-type]
    assert not check.ok and check.images == ()
    assert any(why in p for p in check.problems), check.problems
    assert list(workdir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.zip", "work"]
    assert not Path(name).exists() and not (tmp_path.parent / "escaped.dcm").exists()


def test_a_symlink_member_is_refused(tmp_path: Path) -> None:
    members: list[tuple[str | zipfile.ZipInfo, bytes]] = list(entries())
    members.insert(0, (symlink("00000009.dcm", "/etc/passwd"), b"/etc/passwd"))
    check, workdir = run(tmp_path, members)
    assert not check.ok and "symbolic link" in " ".join(check.problems)
    assert list(workdir.iterdir()) == []


def test_cut_short_zip_without_csv_is_refused_before_extracting(tmp_path: Path) -> None:
    check, workdir = run(tmp_path, entries()[:-2])  # type: ignore[arg-type]
    text = " ".join(check.problems)
    assert "md5hashes.csv is missing" in text
    assert "the ZIP holds 2 images, the lock pins 3, the archive reports 3" in text
    assert list(workdir.iterdir()) == []


def test_archive_count_disagreeing_is_refused(tmp_path: Path) -> None:
    check, _ = run(tmp_path, entries(), archive_objects=4)  # type: ignore[arg-type]
    assert check.problems == ("the ZIP holds 3 images, the lock pins 3, the archive reports 4",)


def test_one_image_with_wrong_bytes_is_named(tmp_path: Path) -> None:
    members = entries()
    name, data = members[1]
    members[1] = (name, data[:-1] + bytes([data[-1] ^ 1]))  # CSV still lists the true MD5
    check, _ = run(tmp_path, members)  # type: ignore[arg-type]
    sop = IMAGES[1].sop_uid
    assert len(check.problems) == 2, check.problems  # differs from the CSV and from the lock
    assert all(p.startswith(f"image {sop} ({name}): computed MD5") for p in check.problems)


def test_an_image_the_lock_does_not_pin_is_named(tmp_path: Path) -> None:
    pinned = {i.sop_uid: md5(CORPUS.image_bytes(i.sop_uid)) for i in IMAGES[1:]}
    pinned["1.2.3.4"] = "0" * 32
    check, _ = run(tmp_path, entries(), pinned=pinned)  # type: ignore[arg-type]
    text = " ".join(check.problems)
    assert f"image {IMAGES[0].sop_uid} (00000001.dcm): this SOPInstanceUID is not pinned" in text
    assert "image 1.2.3.4, pinned by the lock, is not in the ZIP" in text


def test_series_hash_changed_upstream_is_named(tmp_path: Path) -> None:
    check, _ = run(tmp_path, entries(), series_hash="f" * 32)  # type: ignore[arg-type]
    assert any("changed upstream" in p for p in check.problems)


def test_series_only_expectation_checks_hash_and_csv(tmp_path: Path) -> None:
    check, _ = run(tmp_path, entries(), pinned=None)  # type: ignore[arg-type]
    assert check.ok and len(check.images) == 3


def test_short_archive_md5_still_matches_and_null_cannot_be_verified(tmp_path: Path) -> None:
    first = md5(CORPUS.image_bytes(IMAGES[0].sop_uid))
    short = first.lstrip("0") if first.startswith("0") else first
    members = entries({"00000001.dcm": short, "00000002.dcm": None})
    values = [short, None, md5(CORPUS.image_bytes(IMAGES[2].sop_uid))]
    check, _ = run(tmp_path, members, pinned=None, series_hash=series_hash(values))  # type: ignore[arg-type]
    assert check.problems == (
        f"image {IMAGES[1].sop_uid} (00000002.dcm): md5hashes.csv has no MD5 for it (NULL), "
        "so its bytes cannot be verified",
    )


def test_zip_bomb_is_refused_before_extracting(tmp_path: Path) -> None:
    check, workdir = run(tmp_path, entries(), max_bytes=1000)  # type: ignore[arg-type]
    assert any("refusing to extract" in p for p in check.problems)
    assert list(workdir.iterdir()) == []


def test_corrupt_member_and_non_dicom_are_named(tmp_path: Path) -> None:
    members = entries({"00000003.dcm": md5(b"not dicom at all")})
    members[2] = ("00000003.dcm", b"not dicom at all")
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    damaged = bytearray(raw.getvalue())
    first = CORPUS.image_bytes(IMAGES[0].sop_uid)
    at = bytes(damaged).index(first[200:240])
    damaged[at] ^= 0xFF  # inside member 1's stored bytes: its CRC no longer matches
    (tmp_path / "work").mkdir()
    (tmp_path / "series.zip").write_bytes(bytes(damaged))
    check = check_series_zip(tmp_path / "series.zip", expectation(), tmp_path / "work")
    text = " ".join(check.problems)
    assert "ZIP member '00000001.dcm' is corrupt" in text
    assert "ZIP member '00000003.dcm' is not a readable DICOM file" in text


def test_duplicate_names_and_garbage_are_refused(tmp_path: Path) -> None:
    members = entries()
    with pytest.warns(UserWarning, match="Duplicate name"):
        check, _ = run(tmp_path, [members[0], *members])  # type: ignore[arg-type]
    assert any("appears 2 times" in p for p in check.problems)
    (tmp_path / "junk.zip").write_bytes(b"<html>502 Bad Gateway</html>")
    junk = check_series_zip(tmp_path / "junk.zip", expectation(), tmp_path / "work")
    assert junk.problems[0].startswith("the download is not a readable ZIP")


def test_a_download_that_outgrows_its_series_is_stopped() -> None:
    from nbia_audit.fetch.series import _capped, _expectation, _TooLarge
    from nbia_audit.models import LockedSeries

    series = LockedSeries(
        "1.2", "C", "P", "1.1", "CT", "", "", "", "", 2, 1000, "h", "", "", "", "", "", False, True
    )
    expectation = _expectation(series, [], None)
    seen: list[int] = []
    on_bytes = _capped(seen.append, series, expectation)
    on_bytes(expectation.max_bytes)  # up to the limit is fine
    on_bytes(-expectation.max_bytes)  # a restarted attempt discards what it had
    on_bytes(expectation.max_bytes)
    with pytest.raises(_TooLarge, match="download stopped"):
        on_bytes(1)
    assert sum(seen) == expectation.max_bytes

"""The same downloaded copy, laid out as every supported tool lays it out, verifies clean.

Layouts follow nbia-protocol §9 and peers.md §2: the NBIA Data Retriever (classic and
descriptive, with md5hashes.csv, metadata.csv and LICENSE), the Go TCIA retriever
(<PatientID>/<StudyUID>/<SeriesUID>/, metadata/ cache, token cache, progress.log),
tcia_utils (<SeriesUID>/), nbiatoolkit (<PatientName>/<Modality>-<N>-<uid5>/<Instance>.dcm),
idc-index (<collection>/<PatientID>/<StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm), a flat
folder, and our own fetch layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.verify.run import verify_copy
from nbia_audit.verify.sidecars import has_dicom_marker, sidecar_of, sidecar_tool
from tests.support.verify import (
    LAYOUTS,
    Download,
    foreign_dicom,
    image_files,
    materialise,
)

SPEC = CorpusSpec(seed=3, collections=2, patients=1, studies=1, series=2, images=3)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_verifies_clean(
    emu: Emulator, lock: Path, downloads: list[Download], tmp_path: Path, layout: str
) -> None:
    root = tmp_path / layout
    sidecars = materialise(emu, downloads, root, layout)
    report = verify_copy(lock, root)
    assert report.clean, report.findings
    assert report.facts["files"] == 12 and report.facts["hashed_md5"] == 12
    assert report.facts["sidecars"] == sidecars
    assert {s.status for s in report.series} == {"ok"}


@pytest.mark.parametrize("layout", ["retriever-descriptive", "go-retriever", "nbiatoolkit"])
def test_a_layout_still_catches_a_missing_image(
    emu: Emulator, lock: Path, downloads: list[Download], tmp_path: Path, layout: str
) -> None:
    root = tmp_path / layout
    materialise(emu, downloads, root, layout)
    victim = next(image_files(root))
    victim.unlink()
    report = verify_copy(lock, root)
    assert [f.kind for f in report.findings] == ["missing"]


def test_a_sidecar_name_is_not_a_hiding_place_for_images(
    emu: Emulator, lock: Path, downloads: list[Download], tmp_path: Path
) -> None:
    """A file named like a sidecar is one only without the DICOM marker: a locked image
    renamed to ``md5hashes.csv`` is still that image (a rename is no finding), and a
    foreign DICOM file under any sidecar name is unexpected."""
    root = tmp_path / "copy"
    materialise(emu, downloads, root, "tcia_utils")
    victim = next(image_files(root))
    victim.replace(victim.parent / "md5hashes.csv")
    report = verify_copy(lock, root)
    assert report.clean and report.facts["hashed_md5"] == 12
    hideouts = ["._evil.dcm", "LICENSE", "notes.json", "x/metadata/a.json", "x/y.tcia"]
    for name in hideouts:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(foreign_dicom())
    report = verify_copy(lock, root)
    assert sorted((f.kind, f.path) for f in report.findings) == sorted(
        ("unexpected", name) for name in hideouts
    )


def test_a_state_folder_below_the_root_hides_nothing(
    emu: Emulator, lock: Path, downloads: list[Download], tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    materialise(emu, downloads, root, "ours")
    (root / "sub" / ".nbia-audit").mkdir(parents=True)
    (root / "sub" / ".nbia-audit" / "z.dcm").write_bytes(foreign_dicom())
    report = verify_copy(lock, root)
    assert [(f.kind, f.path) for f in report.findings] == [("unexpected", "sub/.nbia-audit/z.dcm")]
    assert (root / ".nbia-audit" / "state.db").is_file()  # ours, at the root: skipped


def test_a_sidecar_is_read_only_as_far_as_its_marker(tmp_path: Path) -> None:
    """132 bytes decide: DICOM's marker at byte 128 makes a sidecar name an ordinary file."""
    plain, dicom = tmp_path / "LICENSE", tmp_path / "x.tcia"
    plain.write_bytes(b"CC BY 4.0\n" * 100)
    dicom.write_bytes(foreign_dicom())
    assert sidecar_of("LICENSE", str(plain)) == sidecar_tool("LICENSE")
    assert sidecar_of("x.tcia", str(dicom)) is None
    assert sidecar_of("a.dcm", str(dicom)) is None
    assert has_dicom_marker(str(dicom)) and not has_dicom_marker(str(plain))


def test_ignore_patterns_leave_files_out(
    emu: Emulator, lock: Path, downloads: list[Download], tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    materialise(emu, downloads, root, "ours")
    (root / "README.md").write_text("about this copy\n")
    (root / "derived").mkdir()
    (root / "derived" / "mask.nii.gz").write_bytes(b"\x1f\x8b")
    assert {f.path for f in verify_copy(lock, root).findings} == {
        "README.md",
        "derived/mask.nii.gz",
    }
    assert verify_copy(lock, root, ignore=["README.md", "derived"]).clean


def test_the_lock_inside_the_copy_is_not_a_finding(
    emu: Emulator, lock: Path, downloads: list[Download], tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    materialise(emu, downloads, root, "ours")
    for name in ("dataset.lock", "dataset.lock.db", "dataset.yaml"):
        (root / name).write_bytes((lock.parent / name).read_bytes())
    assert verify_copy(root / "dataset.lock", root).clean

"""Helpers for the verify tests: a real lock, a real download, every layout, every tampering.

Copies are built from series downloaded from the emulator over loopback
(``getImageWithMD5Hash``, the same ZIP the Data Retriever and the Go retriever fetch), then
laid out as each tool lays them out (nbia-protocol §9, peers.md §2). Zip member names are
never used as paths: files are named from the layout's own rule.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.data

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.client.transport import RetryPolicy
from nbia_audit.emulator import Emulator
from nbia_audit.findings import AuditReport
from nbia_audit.lock.run import lock_dataset

FAST_RETRY = RetryPolicy(attempts=3, base=0.001, cap=0.01)
OLD_NS = 1_600_000_000 * 10**9  # 2020-09-13: well outside any "racily clean" window


def client_for(emu: Emulator) -> NbiaClient:
    return NbiaClient(emu.base_url, retry=FAST_RETRY)


def make_lock(workdir: Path, emu: Emulator, *, series_only: bool = False) -> Path:
    """Lock every collection of the emulator; return the text lock's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    select = "".join(f"  - collection: {c.name}\n" for c in emu.corpus.collections)
    spec = workdir / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n{select}", encoding="utf-8")
    with client_for(emu) as client:
        return lock_dataset(spec, ArchiveView(client), series_only=series_only).lock_path


@dataclass(frozen=True)
class Member:
    """One image from a downloaded series ZIP, with what layouts need to name it."""

    index: int  # position in the ZIP (the archive's positional counter)
    sop: str
    data: bytes


@dataclass(frozen=True)
class Download:
    series_uid: str
    members: tuple[Member, ...]
    md5_csv: bytes


def download_all(emu: Emulator, workdir: Path) -> list[Download]:
    """Download every series with the real client; keep the images in memory (small)."""
    out = []
    workdir.mkdir(parents=True, exist_ok=True)
    with client_for(emu) as client:
        for series in emu.corpus.series:
            zpath = workdir / f"{len(out)}.zip"
            client.download_series(series.series_uid, zpath)
            out.append(_read_zip(series.series_uid, zpath))
            zpath.unlink()
    return out


def _read_zip(series_uid: str, zpath: Path) -> Download:
    members = []
    csv = b""
    with zipfile.ZipFile(zpath) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename == "md5hashes.csv":
                csv = data
                continue
            sop = str(
                pydicom.dcmread(
                    io.BytesIO(data), stop_before_pixels=True, force=True
                ).SOPInstanceUID
            )
            members.append(Member(len(members) + 1, sop, data))
    return Download(series_uid, tuple(members), csv)


# -- layouts -------------------------------------------------------------------------------

Namer = Callable[[Emulator, str, Member], str]


def _last5(uid: str) -> str:
    return uid[-5:]


def _ours(emu: Emulator, uid: str, m: Member) -> str:
    s = emu.corpus.series_by_uid(uid)
    assert s is not None
    return f"{s.collection}/{s.patient_id}/{s.study_uid}/{uid}/{m.sop}.dcm"


def _classic(emu: Emulator, uid: str, m: Member) -> str:
    s = emu.corpus.series_by_uid(uid)
    assert s is not None
    return f"{s.collection}/{s.patient_id}/{s.study_uid}/{uid}/1-{m.index:02d}.dcm"


def _descriptive(emu: Emulator, uid: str, m: Member) -> str:
    s = emu.corpus.series_by_uid(uid)
    assert s is not None
    study = emu.corpus.study(s.study_uid)
    assert study is not None
    date = study.study_date.strftime("%m-%d-%Y") if study.study_date else ""
    study_part = (
        "-".join(p for p in (date, study.study_id, (study.description or "")[:53]) if p)
        + f"-{_last5(s.study_uid)}"
    )
    series_part = f"{s.series_number}.000000-{(s.description or 'NA')[:53]}-{_last5(uid)}"
    return f"{s.collection}/{s.patient_id}/{study_part}/{series_part}/1-{m.index:02d}.dcm"


def _go(emu: Emulator, uid: str, m: Member) -> str:
    s = emu.corpus.series_by_uid(uid)
    assert s is not None
    return f"{s.patient_id}/{s.study_uid}/{uid}/{m.index:08d}.dcm"


def _tcia_utils(emu: Emulator, uid: str, m: Member) -> str:
    return f"{uid}/{m.index:08d}.dcm"


def _nbiatoolkit(emu: Emulator, uid: str, m: Member) -> str:
    ds = pydicom.dcmread(io.BytesIO(m.data), stop_before_pixels=True)
    folder = f"{ds.Modality}-{ds.SeriesNumber}-{_last5(uid)}"
    return f"{ds.PatientName}/{folder}/{ds.InstanceNumber}.dcm"


def _idc(emu: Emulator, uid: str, m: Member) -> str:
    s = emu.corpus.series_by_uid(uid)
    assert s is not None
    instance = uuid.uuid5(uuid.NAMESPACE_OID, m.sop)
    return f"{s.collection.lower()}/{s.patient_id}/{s.study_uid}/{s.modality}_{uid}/{instance}.dcm"


def _flat(emu: Emulator, uid: str, m: Member) -> str:
    return f"{m.sop}.dcm"


LAYOUTS: dict[str, Namer] = {
    "ours": _ours,
    "retriever-classic": _classic,
    "retriever-descriptive": _descriptive,
    "go-retriever": _go,
    "tcia_utils": _tcia_utils,
    "nbiatoolkit": _nbiatoolkit,
    "idc-index": _idc,
    "flat": _flat,
}


def materialise(emu: Emulator, downloads: Iterable[Download], dest: Path, layout: str) -> int:
    """Lay the downloaded images out under ``dest`` as ``layout`` does; return sidecar count."""
    namer = LAYOUTS[layout]
    folders: dict[str, Path] = {}
    for download in downloads:
        for member in download.members:
            path = dest / namer(emu, download.series_uid, member)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(member.data)
            folders[download.series_uid] = path.parent
    return _sidecars(emu, list(downloads), dest, layout, folders)


def _sidecars(
    emu: Emulator, downloads: list[Download], dest: Path, layout: str, folders: dict[str, Path]
) -> int:
    written: list[Path] = []

    def put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)

    if layout in ("retriever-classic", "retriever-descriptive", "go-retriever", "tcia_utils"):
        for d in downloads:
            put(folders[d.series_uid] / "md5hashes.csv", d.md5_csv)
    if layout in ("retriever-classic", "retriever-descriptive"):
        for c in emu.corpus.collections:
            put(dest / c.name / "LICENSE", b"Creative Commons Attribution 4.0\n")
        put(dest / "metadata.csv", b"Series UID,Collection,File Location\r\n")
    if layout == "go-retriever":
        for d in downloads:
            put(folders[d.series_uid] / "LICENSE", b"CC BY 4.0\n")
            put(dest / "metadata" / f"{d.series_uid}.json", b"{}\n")
        put(dest / "metadata.csv", b"SeriesInstanceUID,Collection\n")
        put(dest / "metadata" / "manifest-metadata.csv", b"SeriesInstanceUID\n")
        put(dest / "nbia_guest.json", b"{}\n")  # where the retriever caches its login
        put(dest / "progress.log", b"done\n")
    if layout == "idc-index":
        put(dest / "manifest.s5cmd", b"cp s3://bucket/x/* .\n")
    if layout == "flat":
        put(dest / ".DS_Store", b"\0\0\0\1Bud1")
        put(dest / "manifest.tcia", b"downloadServerUrl=http://x\n")
    return len(written)


# -- handling copies -----------------------------------------------------------------------


def image_files(root: Path) -> Iterator[Path]:
    """Every ``.dcm`` under ``root`` (sorted), outside nbia-audit's state directory."""
    for path in sorted(root.rglob("*.dcm")):
        if ".nbia-audit" not in path.parts:
            yield path


def backdate(root: Path) -> None:
    """Give every file an old mtime, as a copy made some time ago has."""
    for path in root.rglob("*"):
        if path.is_file() and ".nbia-audit" not in path.parts:
            os.utime(path, ns=(OLD_NS, OLD_NS))


def clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def sop_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def flip_bit_keep_mtime(path: Path, offset_from_end: int = 100) -> None:
    """Flip one bit in the pixel data and restore the mtime (ctime still moves)."""
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(st.st_size - offset_from_end)
        byte = handle.read(1)
        handle.seek(st.st_size - offset_from_end)
        handle.write(bytes([byte[0] ^ 0x10]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def truncate_half(path: Path) -> None:
    size = path.stat().st_size
    os.truncate(path, size // 2 + 1)


def foreign_dicom() -> bytes:
    """pydicom's bundled CT_small.dcm: real DICOM that no lock of ours pins."""
    return (Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm").read_bytes()


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def kinds(report: AuditReport) -> set[tuple[str, str, str]]:
    """Findings as (kind, SOP, path) triples; a duplicate's path is its sorted paths."""
    return {(f.kind, f.sop_uid, f.path or "|".join(f.paths)) for f in report.findings}


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()

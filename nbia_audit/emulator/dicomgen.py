"""Deterministic DICOM bytes from pydicom's bundled sample files, re-stamped per image.

Encoding every image with pydicom would cost about a millisecond each, too slow for a corpus of
20,000 images that must be hashed at build time. Instead each template is encoded once: every
element we never change is serialised by pydicom into a byte chunk, and the elements we stamp per
image (UIDs, identity, numbers, dates, pixel data) are left as slots. An image is then the file
preamble, a freshly encoded file meta group and the template's chunks joined with its slot values
(explicit VR little endian). The output is byte-identical for the same inputs: no clock, no
randomness outside the caller's seed.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
# Our own implementation identifiers, so file meta does not change with the pydicom version.
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.77.1"
IMPLEMENTATION_VERSION = "NBIA_AUDIT_EMU"
UID_ROOT = "1.2.826.0.1.3680043.8.498."

# Bundled in the pydicom wheel itself; get_testdata_file() could fall back to a network
# download for other names, which the emulator must never do.
TEMPLATE_FILES: dict[str, str] = {"CT": "CT_small.dcm", "MR": "MR_small.dcm"}

_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UR", "UT", "UN", "UV"}
)

# (tag, VR, field name) of every element stamped per image, in no particular order.
_SLOTS: tuple[tuple[int, str, str], ...] = (
    (0x00080018, "UI", "sop_uid"),
    (0x00080020, "DA", "study_date"),
    (0x00080021, "DA", "series_date"),
    (0x00080022, "DA", "series_date"),
    (0x00080023, "DA", "series_date"),
    (0x00080030, "TM", "study_time"),
    (0x00080060, "CS", "modality"),
    (0x00080070, "LO", "manufacturer"),
    (0x00081030, "LO", "study_description"),
    (0x0008103E, "LO", "series_description"),
    (0x00081090, "LO", "model_name"),
    (0x00100010, "PN", "patient_name"),
    (0x00100020, "LO", "patient_id"),
    (0x00100030, "DA", "patient_birth_date"),
    (0x00100040, "CS", "patient_sex"),
    (0x00101010, "AS", "patient_age"),
    (0x00180015, "CS", "body_part"),
    (0x00181020, "LO", "software_versions"),
    (0x00181030, "LO", "protocol_name"),
    (0x0020000D, "UI", "study_uid"),
    (0x0020000E, "UI", "series_uid"),
    (0x00200010, "SH", "study_id"),
    (0x00200011, "IS", "series_number"),
    (0x00200012, "IS", "acquisition_number"),
    (0x00200013, "IS", "instance_number"),
    (0x00200052, "UI", "frame_uid"),
    (0x00280010, "US", "rows"),
    (0x00280011, "US", "columns"),
    (0x7FE00010, "OW", "pixel_data"),
)
# Template elements dropped: private tags, sequences (they carry the sample's own identities)
# and trailing padding.
_DROP_TAGS = frozenset({0xFFFCFFFC})


@dataclass(frozen=True, slots=True)
class DicomFields:
    """Everything that varies between generated images; the bytes are a pure function of it."""

    template: str
    sop_uid: str
    study_uid: str
    series_uid: str
    frame_uid: str
    patient_id: str
    patient_name: str
    patient_sex: str | None
    patient_birth_date: str | None  # YYYYMMDD
    patient_age: str | None
    study_date: str | None  # YYYYMMDD
    study_time: str | None
    study_id: str | None
    study_description: str | None
    series_date: str | None
    series_description: str | None
    series_number: int | None
    modality: str
    body_part: str | None
    manufacturer: str | None
    model_name: str | None
    software_versions: str | None
    protocol_name: str | None
    instance_number: int | None
    acquisition_number: int | None
    image_bytes: int | None = None  # target size of PixelData; None keeps the template's
    pixel_seed: str = ""


def make_uid(*parts: object) -> str:
    """A deterministic UID under our root, derived from ``parts`` (seed, path in the corpus)."""
    return str(pydicom.uid.generate_uid(UID_ROOT, [str(p) for p in parts]))


def template_path(name: str) -> Path:
    """Path of a sample file bundled inside the installed pydicom package.

    Raises:
        FileNotFoundError: the installed pydicom does not ship that file.
    """
    path = Path(pydicom.data.__file__).parent / "test_files" / name
    if not path.is_file():
        raise FileNotFoundError(f"pydicom does not bundle {name}; reinstall pydicom")
    return path


@dataclass(frozen=True, slots=True)
class _Template:
    sop_class_uid: str
    plan: tuple[bytes | tuple[int, str, str], ...]  # constant chunk or (tag, VR, field)
    pixel_bytes: bytes
    rows: int
    columns: int
    bytes_per_pixel: int


@cache
def _template(modality: str) -> _Template:
    ds = pydicom.dcmread(template_path(TEMPLATE_FILES[modality]))
    slot_tags = {tag for tag, _, _ in _SLOTS}
    chunks: dict[int, bytes | tuple[int, str, str]] = {}
    for elem in ds:
        tag = int(elem.tag)
        if elem.tag.is_private or elem.VR == "SQ" or tag in _DROP_TAGS or tag in slot_tags:
            continue
        if elem.tag.element == 0:  # group lengths are retired and would be stale
            continue
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_data_element(fp, elem)
        chunks[tag] = fp.getvalue()
    for slot in _SLOTS:
        chunks.setdefault(slot[0], slot)
    plan = tuple(chunks[tag] for tag in sorted(chunks))
    return _Template(
        sop_class_uid=str(ds.SOPClassUID),
        plan=plan,
        pixel_bytes=bytes(ds.PixelData),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        bytes_per_pixel=int(ds.BitsAllocated) // 8,
    )


def sop_class_uid(modality: str) -> str:
    """SOP Class UID of the template used for ``modality``."""
    return _template(template_for(modality)).sop_class_uid


def template_for(modality: str) -> str:
    """The template key used for a modality (MR for MR, CT for everything else)."""
    return "MR" if modality == "MR" else "CT"


def _encode(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB", "OW") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _file_meta(sop_class: str, sop_uid: str) -> bytes:
    body = b"".join(
        (
            _encode(0x00020001, "OB", b"\0\1"),
            _encode(0x00020002, "UI", sop_class.encode("ascii")),
            _encode(0x00020003, "UI", sop_uid.encode("ascii")),
            _encode(0x00020010, "UI", EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii")),
            _encode(0x00020012, "UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
            _encode(0x00020013, "SH", IMPLEMENTATION_VERSION.encode("ascii")),
        )
    )
    return _encode(0x00020000, "UL", struct.pack("<I", len(body))) + body


def _geometry(tpl: _Template, image_bytes: int | None) -> tuple[int, int]:
    if image_bytes is None:
        return tpl.rows, tpl.columns
    side = max(1, math.isqrt(max(1, image_bytes // tpl.bytes_per_pixel)))
    return side, side


def _pixels(tpl: _Template, fields: DicomFields, rows: int, columns: int) -> bytes:
    if fields.image_bytes is None:
        return tpl.pixel_bytes
    count = rows * columns * tpl.bytes_per_pixel
    return random.Random(f"{fields.pixel_seed}|{fields.sop_uid}").randbytes(count)


def _slot_value(fields: DicomFields, name: str, extra: dict[str, object]) -> bytes | None:
    value = extra[name] if name in extra else getattr(fields, name)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1")


def encode_image(fields: DicomFields) -> bytes:
    """The complete Part 10 file for one generated image."""
    tpl = _template(fields.template)
    rows, columns = _geometry(tpl, fields.image_bytes)
    extra: dict[str, object] = {
        "rows": struct.pack("<H", rows),
        "columns": struct.pack("<H", columns),
        "pixel_data": _pixels(tpl, fields, rows, columns),
    }
    parts = [b"\0" * 128, b"DICM", _file_meta(tpl.sop_class_uid, fields.sop_uid)]
    for item in tpl.plan:
        if isinstance(item, bytes):
            parts.append(item)
            continue
        tag, vr, name = item
        value = _slot_value(fields, name, extra)
        if value is not None:
            parts.append(_encode(tag, vr, value))
    return b"".join(parts)

"""Read who a DICOM file is (its UIDs) from the header alone, never the pixel data.

Files map to locked images by SOPInstanceUID (0008,0018), never by file name: the archive's
names are positional counters that are not stable between downloads (protocol §2.2, §10.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.errors import InvalidDicomError

__all__ = ["DicomIdentity", "NotDicomError", "raw_text", "read_identity"]

_TAGS = {
    "SOPInstanceUID": 0x00080018,
    "SeriesInstanceUID": 0x0020000E,
    "StudyInstanceUID": 0x0020000D,
    "PatientID": 0x00100020,
}


class NotDicomError(Exception):
    """The bytes are not a readable DICOM header (not DICOM, or truncated inside it)."""


@dataclass(frozen=True, slots=True)
class DicomIdentity:
    """The identifying UIDs of one DICOM instance."""

    sop_uid: str
    series_uid: str
    study_uid: str
    patient_id: str


def read_identity(source: Path | str | BinaryIO) -> DicomIdentity:
    """Read the instance's UIDs from its header.

    Raises:
        NotDicomError: no DICOM preamble/meta, the header is truncated, or no SOPInstanceUID.
        OSError: the file cannot be opened or read.
    """
    try:
        dataset = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=list(_TAGS))
        values = {name: raw_text(dataset, tag) for name, tag in _TAGS.items()}
    except OSError:
        raise
    except InvalidDicomError as exc:
        raise NotDicomError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a hostile or truncated file can fail anywhere
        raise NotDicomError(f"unreadable header ({type(exc).__name__}: {exc})") from exc
    if not values["SOPInstanceUID"]:
        raise NotDicomError("no SOPInstanceUID in the header")
    return DicomIdentity(
        sop_uid=values["SOPInstanceUID"],
        series_uid=values["SeriesInstanceUID"],
        study_uid=values["StudyInstanceUID"],
        patient_id=values["PatientID"],
    )


def raw_text(dataset: pydicom.Dataset, tag: int) -> str:
    """An element's value as stored, without pydicom's value conversion (which validates
    UIDs and warns on odd values): we report what the file says, verbatim. UTF-8 when it
    decodes, else Latin-1, which always does."""
    if tag not in dataset:
        return ""
    raw = dataset.get_item(tag).value
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        return text.strip("\0 ")
    return str(raw or "").strip()

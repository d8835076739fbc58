"""Read the header values a folder layout may need that the lock does not hold.

The lock pins identity, series number and description; the Data Retriever's descriptive
layout and user templates also use the study's date, ID and description and each image's
InstanceNumber (protocol §9.1), which only the DICOM header carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from nbia_audit.dicom.header import raw_text

__all__ = ["HeaderValues", "read_header_values"]

_TAGS = {
    "study_date": 0x00080020,
    "series_date": 0x00080021,
    "modality": 0x00080060,
    "study_description": 0x00081030,
    "series_description": 0x0008103E,
    "study_id": 0x00200010,
    "series_number": 0x00200011,
    "instance_number": 0x00200013,
}


@dataclass(frozen=True, slots=True)
class HeaderValues:
    """Layout-relevant header values as text, ``""`` when absent or unreadable."""

    study_date: str = ""
    series_date: str = ""
    modality: str = ""
    study_description: str = ""
    series_description: str = ""
    study_id: str = ""
    series_number: str = ""
    instance_number: str = ""


def read_header_values(path: Path) -> HeaderValues:
    """Read the values from the header of the DICOM file at ``path`` (never pixel data).

    A file whose header cannot be read gives empty values: the file's identity was already
    proven by ``dicom.header.read_identity``, and a layout shows a missing value as ``NA``.
    """
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_TAGS.values()))
        values = {name: raw_text(dataset, tag) for name, tag in _TAGS.items()}
    except Exception:  # noqa: BLE001 - a damaged header only costs the layout its values
        return HeaderValues()
    return HeaderValues(**values)

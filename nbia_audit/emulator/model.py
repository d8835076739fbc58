"""The emulator's database rows: frozen records shaped like NBIA's tables.

Field names follow the NBIA MySQL columns they stand for (``general_series``, ``general_image``,
``patient``, ``study``, ``collection_descriptions``, ``license``), so the query code in
``queries.py`` reads like the server's DAO. Rows are immutable; a mutation replaces a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from nbia_audit.emulator.dicomgen import DicomFields


@dataclass(frozen=True, slots=True)
class License:
    """A row of NBIA's ``license`` table (served by ``getLicenses``)."""

    id: int
    long_name: str
    short_name: str
    url: str
    text: str
    commercial_use: str  # "YES" / "NO"


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection (``collection_descriptions`` plus the collection's site and visibility)."""

    name: str
    site: str
    description: str  # HTML, as the portal stores it
    doi: str  # description_uri, e.g. https://doi.org/10.7937/...
    license: str  # License.short_name
    public: bool  # visible to the guest user
    desc_id: int
    updated_ms: int  # collectionDescTimestamp, epoch milliseconds


@dataclass(frozen=True, slots=True)
class Patient:
    """A patient row; NBIA scopes patients to one collection."""

    collection: str
    patient_id: str
    name: str
    sex: str | None
    birth_date: date | None
    ethnic_group: str | None
    species_code: str | None = "337915000"
    species_description: str | None = "Homo sapiens"
    phantom: str | None = "NO"


@dataclass(frozen=True, slots=True)
class Study:
    """A study row."""

    study_uid: str
    collection: str
    patient_id: str
    study_date: date | None
    description: str | None
    study_id: str | None
    patient_age: str | None
    admitting_diagnosis: str | None = None
    temporal_event_type: str | None = None
    temporal_offset: int | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """A ``general_series`` row (license and DOI are denormalised there, as in NBIA)."""

    series_uid: str
    study_uid: str
    collection: str
    site: str
    patient_id: str
    modality: str
    series_number: int | None
    description: str | None
    protocol_name: str | None
    body_part: str | None
    series_date: date | None
    manufacturer: str | None
    model_name: str | None
    software_versions: str | None
    date_released: datetime
    max_submission: datetime
    doi: str  # description_uri
    license_name: str | None  # License.long_name
    license_url: str | None
    third_party: str | None = None  # "YES" for third-party analyses
    visibility: str = "1"
    released_status: str = "released"
    annotations_flag: bool | None = None
    sop_class_uid: str | None = None
    pixel_spacing: float | None = None
    slice_thickness: float | None = None


@dataclass(frozen=True, slots=True)
class GeneratedSource:
    """Bytes produced on demand by ``dicomgen.encode_image``."""

    fields: DicomFields


@dataclass(frozen=True, slots=True)
class FileSource:
    """Bytes read from a file on disk (a corpus folder)."""

    path: Path


@dataclass(frozen=True, slots=True)
class BytesSource:
    """Bytes held in memory (an image replaced by a test)."""

    data: bytes


ImageSource = GeneratedSource | FileSource | BytesSource


@dataclass(frozen=True, slots=True)
class Image:
    """A ``general_image`` row; ``stored_md5`` is ``md5_digest`` verbatim (may be short or NULL)."""

    sop_uid: str
    series_uid: str
    instance_number: int | None
    acquisition_number: int | None
    stored_md5: str | None
    size: int  # dicom_size
    source: ImageSource


@dataclass(frozen=True, slots=True)
class Cart:
    """A shared list (``custom_series_list``): a mutable, named set of series UIDs."""

    id: int
    name: str  # stored untrimmed
    series_uids: tuple[str, ...]
    user: str
    created: date
    comment: str | None = None
    hyperlink: str | None = None

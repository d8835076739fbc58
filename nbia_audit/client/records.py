"""Typed, immutable results of NBIA calls.

Raw JSON/CSV rows never leave the client package; these records do. Dates are parsed from
whichever format the API family uses (``MM-DD-YYYY`` on v4, ``YYYY-MM-DD HH:MM:SS.0`` on v1/v2
lists, Java ``Date.toString()`` in v1/v2 ``getSeriesMetaData``; protocol §5 and the real
samples) and the server's string is kept next to the parsed value (``*_raw``), because the lock
records what the archive said, not our reading of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

__all__ = [
    "CollectionDescription",
    "DoiMatch",
    "License",
    "Patient",
    "SeriesDownload",
    "SeriesInfo",
    "SeriesSize",
    "SharedList",
    "Study",
    "TokenInfo",
]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series as NBIA describes it: identity, content summary, provenance and license.

    Fields the endpoint did not send (NBIA omits null attributes, protocol §5) are None.
    ``doi`` is ``DataDescriptionURI`` on v4, ``CollectionURI`` on v1/v2 and ``Data Description
    URI`` in the metadata calls, kept verbatim (real values include ``https//doi.org/…``).
    ``max_submission`` is v4's ``MaxSubmissionTimestamp`` or v1/v2's ``TimeStamp``.
    """

    series_uid: str
    collection: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    modality: str | None = None
    description: str | None = None
    series_number: int | None = None
    body_part: str | None = None
    manufacturer: str | None = None
    manufacturer_model: str | None = None
    software_versions: str | None = None
    protocol_name: str | None = None
    image_count: int | None = None
    file_size: int | None = None
    released: datetime | None = None
    released_raw: str | None = None
    max_submission: datetime | None = None
    max_submission_raw: str | None = None
    series_date: date | None = None
    series_date_raw: str | None = None
    study_date: date | None = None
    study_date_raw: str | None = None
    study_description: str | None = None
    license_name: str | None = None
    license_url: str | None = None
    doi: str | None = None
    third_party: bool | None = None
    annotations: bool | None = None
    site: str | None = None
    authorized: bool | None = None


@dataclass(frozen=True, slots=True)
class Patient:
    """One patient of one collection (``getPatient``; note NBIA's key ``PatientId``)."""

    patient_id: str
    collection: str | None = None
    name: str | None = None
    sex: str | None = None
    ethnic_group: str | None = None
    phantom: str | None = None
    species_code: str | None = None
    species_description: str | None = None
    authorized: bool | None = None


@dataclass(frozen=True, slots=True)
class Study:
    """One study (``getPatientStudy``)."""

    study_uid: str
    collection: str | None = None
    patient_id: str | None = None
    study_date: date | None = None
    study_date_raw: str | None = None
    description: str | None = None
    study_id: str | None = None
    patient_age: str | None = None
    series_count: int | None = None
    authorized: bool | None = None


@dataclass(frozen=True, slots=True)
class SeriesSize:
    """``getSeriesSize``: the sum of the stored DICOM sizes and the number of images."""

    bytes: int
    objects: int


@dataclass(frozen=True, slots=True)
class License:
    """One license from ``getLicenses``."""

    id: int | None
    long_name: str | None = None
    short_name: str | None = None
    url: str | None = None
    text: str | None = None
    commercial_use: str | None = None


@dataclass(frozen=True, slots=True)
class CollectionDescription:
    """One collection from ``getCollectionDescriptions``; ``description`` is HTML.

    ``updated`` comes from ``collectionDescTimestamp`` (epoch milliseconds), which only the
    unversioned endpoint sends, as it alone sends ``license_id`` (protocol §7).
    """

    collection: str
    description: str | None = None
    doi: str | None = None
    id: int | None = None
    license_id: int | None = None
    updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class DoiMatch:
    """One answer of ``getCollectionOrSeriesForDOI``; ``series_uid`` only at series level."""

    collection: str
    series_uid: str | None = None
    third_party: bool | None = None
    authorized: bool | None = None


@dataclass(frozen=True, slots=True)
class SharedList:
    """A shared cart as stored (``getSharedList``), including series no longer visible.

    ``series_uids`` is sorted: the server returns them in arbitrary order (supplement §1.3).
    A cart can be edited or deleted at any time, so it is an input, never a pin.
    """

    name: str
    series_uids: tuple[str, ...]
    description: str | None = None
    url: str | None = None
    owner: str | None = None
    created: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesDownload:
    """What one streamed series download left on disk, as received.

    ``entries`` are the ZIP member names in archive order. The client checks only that the
    ZIP is whole (its central directory is readable); whether every image is present, and
    whether ``md5hashes.csv`` is (``has_md5_csv``), is for the caller to judge against
    ``getSeriesSize``/``getSOPInstanceUIDs`` (protocol §2.1: mid-stream failures are silent).
    """

    series_uid: str
    path: Path
    bytes_received: int
    entries: tuple[str, ...]
    attempts: int = 1

    @property
    def has_md5_csv(self) -> bool:
        """True when the archive's ``md5hashes.csv`` is among the entries (protocol §2.3)."""
        return "md5hashes.csv" in self.entries

    @property
    def image_entries(self) -> tuple[str, ...]:
        """The entries that are neither ``md5hashes.csv`` nor ``LICENSE``."""
        return tuple(e for e in self.entries if e not in ("md5hashes.csv", "LICENSE"))


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An OAuth token pair; the secrets never appear in ``repr``/``str``.

    ``issued_at``, ``expires_at`` and ``refresh_expires_at`` are seconds since the epoch on the
    client's clock; ``refresh_expires_at`` is None when the server did not bound the refresh
    token.
    """

    access_token: str = field(repr=False)
    issued_at: float
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None
    client_id: str = "nbia"

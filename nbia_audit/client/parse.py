"""Decode NBIA response bodies (JSON arrays, quoted CSV) into typed records.

The same record comes back under different key spellings depending on the endpoint and the
API family (protocol §5, §7; real samples in ``/work/shared/real-samples``):

* v4 ``getSeries``: ``DataDescriptionURI``, ``MaxSubmissionTimestamp``, dates ``MM-DD-YYYY``;
* v1/v2 ``getSeries``: ``CollectionURI``, ``TimeStamp``, dates ``YYYY-MM-DD HH:MM:SS.0``;
* v1/v2 ``getSeriesMetaData``: "pretty" keys (``Series UID``, ``Subject ID``), ``Date
  Released`` as Java ``Date.toString()`` (``Mon Nov 04 11:45:52 UTC 2013``), ``Series Number``
  as ``300.000000``, every value possibly a string;
* ``getSeriesMetadata2`` CSV: ``Series ID``, ``Collection Name``, ``Number of images``.

Each field is therefore read through a tuple of aliases, and each date through every format
NBIA is known to emit; the formats cannot be confused with one another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from nbia_audit.client.records import (
    CollectionDescription,
    DoiMatch,
    License,
    Patient,
    SeriesInfo,
    SeriesSize,
    SharedList,
    Study,
)
from nbia_audit.client.redact import excerpt
from nbia_audit.client.shapes import bounded_csv_rows, is_uid
from nbia_audit.errors import ApiProtocolError

__all__ = [
    "collection_description",
    "collection_name",
    "sop_instance_uid",
    "decode_csv_rows",
    "decode_json_rows",
    "doi_match",
    "license_record",
    "parse_date",
    "parse_timestamp",
    "patient",
    "series_info",
    "cart_series",
    "series_size",
    "shared_list",
    "study",
    "text_field",
]

Row = Mapping[str, Any]

_TIMESTAMP_FORMATS = (
    "%m-%d-%Y",  # v4 date_format(..., '%m-%d-%Y') (protocol §5)
    "%Y-%m-%d %H:%M:%S.%f",  # v1/v2 JDBC Timestamp.toString()
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%m-%d-%Y %H:%M:%S",
)
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def decode_json_rows(body: bytes, endpoint: str) -> list[dict[str, Any]]:
    """Decode a JSON array of objects; an empty body (or Jackson's ``null``) means no rows.

    Raises:
        ApiProtocolError: the body is not JSON, or not an array of objects.
    """
    if body.strip() in (b"", b"null"):
        return []
    try:
        decoded: Any = json.loads(body)
    except ValueError as exc:
        raise ApiProtocolError(
            f"{endpoint}: expected a JSON array but got {_preview(body)}"
        ) from exc
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list) or not all(isinstance(r, dict) for r in decoded):
        raise ApiProtocolError(
            f"{endpoint}: expected a JSON array of objects, got {_preview(body)}"
        )
    return decoded


def decode_csv_rows(body: bytes, endpoint: str) -> list[dict[str, str]]:
    """Decode a CSV with a header row (NBIA quotes every field); an empty body means no rows.

    Raises:
        ApiProtocolError: the body is not UTF-8 or a row is longer than the header.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiProtocolError(f"{endpoint}: the CSV answer is not UTF-8") from exc
    if not text.strip():
        return []
    rows = bounded_csv_rows(text, f"{endpoint}: the CSV answer")
    header = next(rows)
    records = []
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) > len(header):
            raise ApiProtocolError(f"{endpoint}: CSV line {number} has more fields than the header")
        records.append(dict(zip(header, row, strict=False)))
    return records


def text_field(row: Row, *keys: str) -> str | None:
    """Return the first present, non-empty value among ``keys`` as a string."""
    for key in keys:
        value = row.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        text = str(value)
        if text != "":
            return text
    return None


def _integer(row: Row, *keys: str) -> int | None:
    raw = text_field(row, *keys)
    if raw is None:
        return None
    try:
        number = float(raw.strip())
    except ValueError:
        return None
    # "300.000000" (v1/v2 getSeriesMetaData) is the integer 300; 2.5 is not an integer.
    return int(number) if number.is_integer() else None


def _flag(row: Row, *keys: str) -> bool | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, bool):
            return value
        if value is not None:
            word = str(value).strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
    return None


def parse_timestamp(raw: str | None) -> datetime | None:
    """Parse any date or timestamp format NBIA emits; None when absent or unrecognised."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    for fmt in _TIMESTAMP_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return _java_date_string(text)


def parse_date(raw: str | None) -> date | None:
    """Parse the date part of any NBIA date or timestamp; None when absent or unrecognised."""
    moment = parse_timestamp(raw)
    return moment.date() if moment else None


def _java_date_string(text: str) -> datetime | None:
    # Java Date.toString(): "Mon Nov 04 11:45:52 UTC 2013". strptime's %Z knows few zone
    # names, so drop the zone (the server's wall-clock time is kept, as for every other format).
    words = text.split()
    if len(words) != 6:
        return None
    try:
        return datetime.strptime(" ".join(words[:4] + words[5:]), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None


def _required(row: Row, endpoint: str, *keys: str) -> str:
    value = text_field(row, *keys)
    if value is None:
        raise ApiProtocolError(f"{endpoint}: a row lacks {keys[0]}: {_preview(repr(row))}")
    return value


def _uid(row: Row, endpoint: str, *keys: str, required: bool = True) -> str | None:
    """A UID field, refused unless it is a DICOM UID: it is sent back to the server in URLs
    and forms and becomes a key of the lock, so a page or a 128 KiB value must stop here."""
    value = _required(row, endpoint, *keys) if required else text_field(row, *keys)
    if value is not None and not is_uid(value):
        raise ApiProtocolError(f"{endpoint}: {keys[0]} {_preview(value)} is not a DICOM UID")
    return value


def series_info(row: Row, endpoint: str) -> SeriesInfo:
    """Build a :class:`SeriesInfo` from any series-shaped row (JSON or CSV, any family).

    Raises:
        ApiProtocolError: the row has no series UID.
    """
    released = text_field(row, "DateReleased", "Date Released")
    submitted = text_field(row, "MaxSubmissionTimestamp", "TimeStamp")
    series_date = text_field(row, "SeriesDate", "Series Date")
    study_date = text_field(row, "StudyDate", "Study Date")
    return SeriesInfo(
        series_uid=_uid(row, endpoint, "SeriesInstanceUID", "Series UID", "Series ID") or "",
        collection=text_field(row, "Collection", "Collection Name"),
        patient_id=text_field(row, "PatientID", "Subject ID"),
        study_uid=_uid(row, endpoint, "StudyInstanceUID", "Study UID", required=False),
        modality=text_field(row, "Modality"),
        description=text_field(row, "SeriesDescription", "Series Description"),
        series_number=_integer(row, "SeriesNumber", "Series Number"),
        body_part=text_field(row, "BodyPartExamined", "Body Part Examined"),
        manufacturer=text_field(row, "Manufacturer"),
        manufacturer_model=text_field(row, "ManufacturerModelName", "Manufacturer Model Name"),
        software_versions=text_field(row, "SoftwareVersions", "Software Versions"),
        protocol_name=text_field(row, "ProtocolName", "Protocol Name"),
        image_count=_integer(row, "ImageCount", "Number of Images", "Number of images"),
        file_size=_integer(row, "FileSize", "File Size", "File Size (Bytes)"),
        released=parse_timestamp(released),
        released_raw=released,
        max_submission=parse_timestamp(submitted),
        max_submission_raw=submitted,
        series_date=parse_date(series_date),
        series_date_raw=series_date,
        study_date=parse_date(study_date),
        study_date_raw=study_date,
        study_description=text_field(row, "StudyDesc", "Study Description"),
        license_name=text_field(row, "LicenseName", "License Name"),
        license_url=text_field(row, "LicenseURI", "License URL"),
        doi=text_field(row, "DataDescriptionURI", "CollectionURI", "Data Description URI"),
        third_party=_flag(row, "ThirdPartyAnalysis", "3rd Party Analysis"),
        annotations=_flag(row, "AnnotationsFlag", "Annotations Flag"),
        site=text_field(row, "Site"),
        authorized=_flag(row, "Authorized"),
    )


def collection_name(row: Row, endpoint: str) -> str:
    """The name in a ``getCollectionValues`` row.

    Raises:
        ApiProtocolError: the row has no collection name.
    """
    return _required(row, endpoint, "Collection")


def sop_instance_uid(row: Row, endpoint: str) -> str:
    """The UID in a ``getSOPInstanceUIDs`` row; it keys the per-image MD5 request.

    Raises:
        ApiProtocolError: the row has no SOPInstanceUID, or one that is not a DICOM UID.
    """
    return _uid(row, endpoint, "SOPInstanceUID") or ""


def patient(row: Row, endpoint: str) -> Patient:
    """Build a :class:`Patient`; NBIA spells the key ``PatientId`` here (protocol §5).

    Raises:
        ApiProtocolError: the row has no patient ID.
    """
    return Patient(
        patient_id=_required(row, endpoint, "PatientId", "PatientID"),
        collection=text_field(row, "Collection"),
        name=text_field(row, "PatientName"),
        sex=text_field(row, "PatientSex"),
        ethnic_group=text_field(row, "EthnicGroup"),
        phantom=text_field(row, "Phantom"),
        species_code=text_field(row, "SpeciesCode"),
        species_description=text_field(row, "SpeciesDescription"),
        authorized=_flag(row, "Authorized"),
    )


def study(row: Row, endpoint: str) -> Study:
    """Build a :class:`Study` from a ``getPatientStudy`` row.

    Raises:
        ApiProtocolError: the row has no study UID.
    """
    raw_date = text_field(row, "StudyDate")
    return Study(
        study_uid=_uid(row, endpoint, "StudyInstanceUID") or "",
        collection=text_field(row, "Collection"),
        patient_id=text_field(row, "PatientID", "PatientId"),
        study_date=parse_date(raw_date),
        study_date_raw=raw_date,
        description=text_field(row, "StudyDescription", "StudyDesc"),
        study_id=text_field(row, "StudyID"),
        patient_age=text_field(row, "PatientAge"),
        series_count=_integer(row, "SeriesCount"),
        authorized=_flag(row, "Authorized"),
    )


def series_size(row: Row, endpoint: str) -> SeriesSize | None:
    """Build a :class:`SeriesSize` from a ``getSeriesSize`` row; None for v1's all-null row.

    v4 omits ``TotalSizeInBytes`` for a series without images (the SQL SUM is NULL), and
    v1 may answer ``[{}]`` for an unknown series (supplement §4.1).

    Raises:
        ApiProtocolError: a value is present but not an integer.
    """
    if not row:
        return None
    size = _integer(row, "TotalSizeInBytes")
    count = _integer(row, "ObjectCount")
    if count is None or (size is None and (count != 0 or "TotalSizeInBytes" in row)):
        raise ApiProtocolError(
            f"{endpoint}: expected TotalSizeInBytes and ObjectCount, got {_preview(repr(row))}"
        )
    return SeriesSize(bytes=size or 0, objects=count)


def cart_series(study_row: Row, series_row: Row, endpoint: str) -> SeriesInfo:
    """Build a :class:`SeriesInfo` from one ``seriesList`` item of a ``getCartData`` study.

    The bean's keys are lowerCamel (supplement §1.5); dates are ``MM-dd-yyyy`` or "".

    Raises:
        ApiProtocolError: the item has no series UID.
    """
    study_date = text_field(study_row, "date")
    return SeriesInfo(
        series_uid=_required(series_row, endpoint, "seriesUID", "seriesId"),
        collection=text_field(series_row, "project"),
        patient_id=text_field(series_row, "patientId"),
        study_uid=text_field(series_row, "studyId") or text_field(study_row, "studyId"),
        modality=text_field(series_row, "modality"),
        description=text_field(series_row, "description"),
        series_number=_integer(series_row, "seriesNumber"),
        body_part=text_field(series_row, "bodyPartExamined"),
        manufacturer=text_field(series_row, "manufacturer"),
        image_count=_integer(series_row, "numberImages"),
        file_size=_integer(series_row, "totalSizeForAllImagesInSeries", "exactSize"),
        study_date=parse_date(study_date),
        study_date_raw=study_date,
        study_description=text_field(study_row, "description"),
        doi=text_field(series_row, "descriptionURI"),
        third_party=_flag(series_row, "thirdPartyAnalysis"),
    )


def shared_list(row: Row, endpoint: str) -> SharedList:
    """Build a :class:`SharedList` from the ``getSharedList`` object (supplement §1.3).

    Raises:
        ApiProtocolError: the object has no name or its UID list is not a list.
    """
    uids = row.get("seriesInstanceUIDs") or []
    if not isinstance(uids, list):
        raise ApiProtocolError(f"{endpoint}: seriesInstanceUIDs is not a list")
    return SharedList(
        name=_required(row, endpoint, "name"),
        series_uids=tuple(sorted(str(uid) for uid in uids)),
        description=text_field(row, "comment"),
        url=text_field(row, "hyperlink"),
        owner=text_field(row, "userName"),
        created=text_field(row, "dateString"),
    )


def license_record(row: Row, endpoint: str) -> License:
    """Build a :class:`License` from a ``getLicenses`` row."""
    return License(
        id=_integer(row, "id"),
        long_name=text_field(row, "longName"),
        short_name=text_field(row, "shortName"),
        url=text_field(row, "licenseURL"),
        text=text_field(row, "licenseText"),
        commercial_use=text_field(row, "commercialUse"),
    )


def collection_description(row: Row, endpoint: str) -> CollectionDescription:
    """Build a :class:`CollectionDescription` from a ``getCollectionDescriptions`` row.

    Raises:
        ApiProtocolError: the row has no collection name.
    """
    millis = _integer(row, "collectionDescTimestamp")
    return CollectionDescription(
        collection=_required(row, endpoint, "collectionName"),
        description=text_field(row, "description"),
        doi=text_field(row, "descriptionURI"),
        id=_integer(row, "id"),
        license_id=_integer(row, "licenseId"),
        updated=datetime.fromtimestamp(millis / 1000, UTC) if millis is not None else None,
    )


def doi_match(row: Row, endpoint: str) -> DoiMatch:
    """Build a :class:`DoiMatch`; the server spells ``thirdPartyAnanlysis`` (sic, protocol §7).

    Raises:
        ApiProtocolError: the row has no collection.
    """
    return DoiMatch(
        collection=_required(row, endpoint, "collection"),
        series_uid=_uid(row, endpoint, "seriesInstanceUID", required=False),
        third_party=_flag(row, "thirdPartyAnanlysis", "thirdPartyAnalysis"),
        authorized=_flag(row, "authorized"),
    )


def _preview(body: bytes | str) -> str:
    return repr(excerpt(body, 80))

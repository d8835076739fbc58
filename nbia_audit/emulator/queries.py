"""DAO-like selections over the corpus, mirroring the NBIA queries' filters and row shapes.

Conventions taken from the DAOs (``GeneralSeriesDAOImpl``, ``PatientDAOImpl``): every list is
limited to ``visibility='1'`` series in the caller's authorized collections; v4 compares most
text filters with ``UPPER(col) = UPPER(:param)``, v1/v2 upper-case only the collection and
patient; UIDs are exact. Without ORDER BY, rows come in DB (insertion) order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime

from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.model import Patient, Series, Study
from nbia_audit.emulator.wire import Row, decimal6, java_timestamp, mdy

Filter = Callable[[Series], bool]

SERIES_V1_COLUMNS = (
    "SeriesInstanceUID", "StudyInstanceUID", "Modality", "ProtocolName", "SeriesDate",
    "SeriesDescription", "BodyPartExamined", "SeriesNumber", "AnnotationsFlag", "Collection",
    "PatientID", "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ImageCount",
    "TimeStamp", "LicenseName", "LicenseURI", "CollectionURI", "FileSize", "DateReleased",
    "StudyDesc", "StudyDate", "ThirdPartyAnalysis",
)  # fmt: skip
UPDATED_V1_COLUMNS = SERIES_V1_COLUMNS[:15] + ("DateReleased",)
SERIES_V4_COLUMNS = (
    "SeriesInstanceUID", "StudyInstanceUID", "Modality", "ProtocolName", "SeriesDate",
    "SeriesDescription", "BodyPartExamined", "SeriesNumber", "AnnotationsFlag", "Collection",
    "Site", "PatientID", "PatientSex", "PatientAge", "AdmittingDiagnosisDescription",
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ImageCount",
    "MaxSubmissionTimestamp", "LicenseName", "LicenseURI", "DataDescriptionURI", "FileSize",
    "ReleasedStatus", "DateReleased", "StudyDesc", "StudyDate", "ThirdPartyAnalysis",
    "Authorized",
)  # fmt: skip
PATIENT_V1_COLUMNS = (
    "PatientId", "PatientName", "PatientBirthDate", "PatientSex", "EthnicGroup", "Collection",
    "Phantom", "SpeciesCode", "SpeciesDescription",
)  # fmt: skip
PATIENT_V4_COLUMNS = (
    "PatientId", "PatientName", "PatientSex", "EthnicGroup", "Collection", "Phantom",
    "SpeciesCode", "SpeciesDescription", "Authorized",
)  # fmt: skip
STUDY_V1_COLUMNS = (
    "StudyInstanceUID", "StudyDate", "StudyDescription", "AdmittingDiagnosesDescription",
    "StudyID", "PatientAge", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "EthnicGroup", "Collection", "SeriesCount", "LongitudinalTemporalEventType",
    "LongitudinalTemporalOffsetFromEvent",
)  # fmt: skip
STUDY_V4_COLUMNS = tuple(c for c in STUDY_V1_COLUMNS if c != "PatientBirthDate") + ("Authorized",)


def upper_eq(value: str | None, param: str) -> bool:
    """``UPPER(col) = UPPER(:param)``; a NULL column never matches."""
    return value is not None and value.upper() == param.upper()


def visible(corpus: Corpus, sites: frozenset[str], *filters: Filter) -> list[Series]:
    """``visibility in ('1')`` series of authorized collections passing every filter."""
    return [
        s
        for s in corpus.series
        if s.visibility == "1" and s.collection in sites and all(f(s) for f in filters)
    ]


def field_filter(
    params: Iterable[tuple[str | None, Callable[[Series], str | None]]], *, upper: bool
) -> list[Filter]:
    """Filters for the parameters that were sent (None means "not sent": no filter)."""
    return [_matcher(wanted, getter, upper) for wanted, getter in params if wanted is not None]


def _matcher(wanted: str, getter: Callable[[Series], str | None], upper: bool) -> Filter:
    if upper:
        return lambda s: upper_eq(getter(s), wanted)
    return lambda s: getter(s) == wanted


def uid_in(wanted: set[str]) -> Filter:
    """Series whose UID, upper-cased, is in ``wanted`` (``UPPER(uid) in (...)``)."""
    return lambda s: s.series_uid.upper() in wanted


def series_stats(corpus: Corpus, series_uid: str) -> tuple[int, int | None]:
    """(count(*), sum(dicom_size)) of a series' images; the sum is NULL with no images."""
    images = corpus.images_of(series_uid)
    return len(images), (sum(i.size for i in images) if images else None)


def series_row_v1(corpus: Corpus, s: Series, columns: tuple[str, ...] = SERIES_V1_COLUMNS) -> Row:
    """A v1/v2 ``getSeries`` row (Hibernate values: ints, booleans, Timestamp strings)."""
    study = corpus.study(s.study_uid)
    count, size = series_stats(corpus, s.series_uid)
    values: dict[str, object] = {
        "SeriesInstanceUID": s.series_uid,
        "StudyInstanceUID": s.study_uid,
        "Modality": s.modality,
        "ProtocolName": s.protocol_name,
        "SeriesDate": java_timestamp(s.series_date),
        "SeriesDescription": s.description,
        "BodyPartExamined": s.body_part,
        "SeriesNumber": s.series_number,
        "AnnotationsFlag": s.annotations_flag,
        "Collection": s.collection,
        "PatientID": s.patient_id,
        "Manufacturer": s.manufacturer,
        "ManufacturerModelName": s.model_name,
        "SoftwareVersions": s.software_versions,
        "ImageCount": count,
        "TimeStamp": java_timestamp(s.max_submission),
        "LicenseName": s.license_name,
        "LicenseURI": s.license_url,
        "CollectionURI": s.doi,
        "FileSize": size,
        "DateReleased": java_timestamp(s.date_released),
        "StudyDesc": study.description if study else None,
        "StudyDate": java_timestamp(study.study_date) if study else None,
        "ThirdPartyAnalysis": s.third_party,
    }
    return tuple(values[c] for c in columns)  # type: ignore[misc]


def series_row_v4(corpus: Corpus, s: Series) -> Row:
    """A v4 ``getSeries`` row (raw SQL: decimals, ``%m-%d-%Y`` dates, Authorized=1)."""
    study = corpus.study(s.study_uid)
    patient = corpus.patient(s.collection, s.patient_id)
    count, size = series_stats(corpus, s.series_uid)
    return (
        s.series_uid,
        s.study_uid,
        s.modality,
        s.protocol_name,
        mdy(s.series_date),
        s.description,
        s.body_part,
        decimal6(s.series_number),
        None if s.annotations_flag is None else str(s.annotations_flag).lower(),
        s.collection,
        s.site,
        s.patient_id,
        patient.sex if patient else None,
        study.patient_age if study else None,
        study.admitting_diagnosis if study else None,
        s.manufacturer,
        s.model_name,
        s.software_versions,
        count,
        mdy(s.max_submission),
        s.license_name,
        s.license_url,
        s.doi,
        decimal6(size),
        s.released_status,
        mdy(s.date_released),
        study.description if study else None,
        mdy(study.study_date) if study else None,
        s.third_party,
        1,
    )


def distinct_sorted(values: Iterable[str | None]) -> list[str | None]:
    """``select distinct ... order by``: NULL first, then ascending."""
    unique = set(values)
    return sorted(unique, key=lambda v: (v is not None, v or ""))


def patients_of(corpus: Corpus, series: Iterable[Series]) -> list[Patient]:
    """``select distinct p.* from patient p, general_series gs``: patients of these series."""
    seen: dict[tuple[str, str], Patient] = {}
    for s in series:
        key = (s.collection, s.patient_id)
        patient = corpus.patient(*key)
        if key not in seen and patient is not None:
            seen[key] = patient
    return list(seen.values())


def patient_row(p: Patient, *, v4: bool) -> Row:
    """A ``getPatient`` row; the DAO fills Phantom/species defaults for humans."""
    if v4:
        return (
            p.patient_id, p.name, p.sex, p.ethnic_group, p.collection,
            p.phantom or "NO", p.species_code or "337915000",
            p.species_description or "Homo sapiens", 1,
        )  # fmt: skip
    return (
        p.patient_id, p.name, java_timestamp(p.birth_date), p.sex, p.ethnic_group, p.collection,
        p.phantom or "NO", p.species_code or "337915000", p.species_description or "Homo sapiens",
    )  # fmt: skip


def studies_of(corpus: Corpus, series: Iterable[Series]) -> list[tuple[Study, int]]:
    """Distinct studies of these series with their (visible, authorized) series count."""
    counts: dict[str, int] = {}
    for s in series:
        counts[s.study_uid] = counts.get(s.study_uid, 0) + 1
    out = []
    for uid, count in counts.items():
        study = corpus.study(uid)
        if study is not None:
            out.append((study, count))
    return out


def study_row(corpus: Corpus, study: Study, series_count: int, *, v4: bool) -> Row:
    """A ``getPatientStudy`` row."""
    p = corpus.patient(study.collection, study.patient_id)
    values: list[object] = [
        study.study_uid,
        mdy(study.study_date) if v4 else java_timestamp(study.study_date),
        study.description,
        study.admitting_diagnosis,
        study.study_id,
        study.patient_age,
        study.patient_id,
        p.name if p else None,
    ]
    if not v4:
        values.append(java_timestamp(p.birth_date) if p else None)
    values += [
        p.sex if p else None,
        p.ethnic_group if p else None,
        study.collection,
        series_count,
        study.temporal_event_type,
        study.temporal_offset,
    ]
    if v4:
        values.append(1)
    return tuple(values)  # type: ignore[arg-type]


def parse_date(text: str | None, fmt: str) -> date | None:
    """A lenient-enough Java ``SimpleDateFormat``/``STR_TO_DATE``: None when unparsable."""
    if text is None:
        return None
    try:
        return datetime.strptime(text.strip(), fmt).date()
    except ValueError:
        return None


def midnight(day: date) -> datetime:
    """The start of ``day``: what ``STR_TO_DATE`` or a parsed ``java.util.Date`` stands for."""
    return datetime(day.year, day.month, day.day)

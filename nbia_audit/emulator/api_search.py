"""Search and metadata endpoints of v1, v2 and v4 (protocol §5)."""

from __future__ import annotations

import re

from nbia_audit.emulator import queries as q
from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.model import Series
from nbia_audit.emulator.routes import Family, Request, endpoint
from nbia_audit.emulator.wire import (
    Response,
    Row,
    bad_request,
    decimal6,
    format_rows,
    format_values,
    java_date_string,
    mdy,
)

ALL: tuple[Family, ...] = ("v1", "v2", "v4")
REQUIRED_SERIES = "A parameter, SeriesInstanceUID is required for this API call."
REQUIRED_DATE = "A parameter, Collection and Date are required for this API call."


def _collection_filter(req: Request) -> list[q.Filter]:
    return q.field_filter([(req.get("Collection"), lambda s: s.collection)], upper=True)


def _values(ctx: Backend, req: Request, column: str, attr: str, params: list[str]) -> Response:
    getters = {
        "Collection": lambda s: s.collection,
        "Modality": lambda s: s.modality,
        "BodyPartExamined": lambda s: s.body_part,
    }
    # v4 upper-cases every filter; v1/v2 only the collection.
    filters = q.field_filter([(req.get("Collection"), getters["Collection"])], upper=True)
    filters += q.field_filter(
        [(req.get(p), getters[p]) for p in params if p != "Collection"], upper=req.family == "v4"
    )
    series = q.visible(ctx.corpus, req.sites, *filters)
    values = q.distinct_sorted(getattr(s, attr) for s in series)
    return format_values(req.get("format"), column, values)


@endpoint("getCollectionValues", ALL, allowed=("format",))
def get_collection_values(ctx: Backend, req: Request) -> Response:
    """Distinct collections the caller may see."""
    return _values(ctx, req, "Collection", "collection", [])


@endpoint(
    "getModalityValues", ALL, auth="swallow", allowed=("Collection", "format", "BodyPartExamined")
)
def get_modality_values(ctx: Backend, req: Request) -> Response:
    """Distinct modalities, optionally per collection and body part."""
    return _values(ctx, req, "Modality", "modality", ["Collection", "BodyPartExamined"])


@endpoint("getBodyPartValues", ALL, auth="swallow", allowed=("Collection", "format", "Modality"))
def get_body_part_values(ctx: Backend, req: Request) -> Response:
    """Distinct body parts; a NULL one is served as ``{}`` (real-samples getBodyPartValues)."""
    return _values(ctx, req, "BodyPartExamined", "body_part", ["Collection", "Modality"])


@endpoint(
    "getManufacturerValues",
    ALL,
    auth="swallow",
    allowed=("Collection", "format", "Modality", "BodyPartExamined"),
)
def get_manufacturer_values(ctx: Backend, req: Request) -> Response:
    """Distinct manufacturers."""
    return _values(
        ctx, req, "Manufacturer", "manufacturer", ["Collection", "Modality", "BodyPartExamined"]
    )


@endpoint("getPatient", ALL, auth="swallow", allowed=("Collection", "PatientId", "format"))
def get_patient(ctx: Backend, req: Request) -> Response:
    """Patients with visible series; note the ``PatientId`` spelling (protocol §5)."""
    v4 = req.family == "v4"
    filters = _collection_filter(req)
    pid = req.get("PatientId")
    if pid is not None:
        filters.append(lambda s: s.patient_id == (pid if v4 else pid.upper()))
    patients = q.patients_of(ctx.corpus, q.visible(ctx.corpus, req.sites, *filters))
    rows = [q.patient_row(p, v4=v4) for p in patients]
    return format_rows(
        req.get("format"), q.PATIENT_V4_COLUMNS if v4 else q.PATIENT_V1_COLUMNS, rows
    )


@endpoint(
    "getPatientByCollectionAndModality",
    ALL,
    auth="swallow",
    allowed=("Collection", "Modality", "format"),
)
def get_patient_by_collection_and_modality(ctx: Backend, req: Request) -> Response:
    """Patient IDs of a collection having a modality (both required)."""
    collection, modality = req.get("Collection"), req.get("Modality")
    if collection is None or modality is None:
        return bad_request("A parameter, Collection and Modality, are required for this API call.")
    v4 = req.family == "v4"
    series = q.visible(
        ctx.corpus,
        req.sites,
        lambda s: upper_or_exact(s.collection, collection, upper=v4, upper_column=True),
        lambda s: upper_or_exact(s.modality, modality, upper=v4),
    )
    patients = q.patients_of(ctx.corpus, series)
    if v4:
        return format_rows(
            req.get("format"), ("PatientId", "Authorized"), [(p.patient_id, 1) for p in patients]
        )
    return format_values(req.get("format"), "PatientId", [p.patient_id for p in patients])


def upper_or_exact(
    value: str | None, param: str, *, upper: bool, upper_column: bool = False
) -> bool:
    """v4's ``UPPER(col)=UPPER(:p)``; v1's ``UPPER(col)=?`` with the parameter as sent."""
    if value is None:
        return False
    if upper:
        return value.upper() == param.upper()
    return (value.upper() if upper_column else value) == param


def _released_since(req: Request) -> tuple[Response | None, q.Filter | None]:
    """The ``Date`` (v1/v2, ``yyyy/MM/dd``) or ``fromDate`` (v4, ``MM-dd-yyyy``) filter.

    Both compare the ``date_released`` *datetime* with midnight of the given day: v1/v2's HQL
    binds a ``java.util.Date`` (``gs.dateReleased>?``), v4's SQL ``>= STR_TO_DATE(...)``. A
    series released at 10:00 on that day is therefore new for both (supplement §7.3).
    """
    v4 = req.family == "v4"
    raw = req.get("fromDate" if v4 else "Date")
    if req.get("Collection") is None or raw is None:
        return bad_request(REQUIRED_DATE), None
    since = q.parse_date(raw, "%m-%d-%Y" if v4 else "%Y/%m/%d")
    if since is None:
        return None, None  # unparsable date: the query finds nothing
    midnight = q.midnight(since)
    if v4:
        return None, lambda s: s.date_released >= midnight
    return None, lambda s: s.date_released > midnight


@endpoint(
    "NewPatientsInCollection", ALL, auth="swallow", allowed=("Collection", "fromDate", "format")
)
def new_patients_in_collection(ctx: Backend, req: Request) -> Response:
    """Patients with series released since a date."""
    error, since = _released_since(req)
    if error is not None:
        return error
    v4 = req.family == "v4"
    columns = q.PATIENT_V4_COLUMNS if v4 else q.PATIENT_V1_COLUMNS
    if since is None:
        return format_rows(req.get("format"), columns, [])
    series = q.visible(ctx.corpus, req.sites, *_collection_filter(req), since)
    rows = [q.patient_row(p, v4=v4) for p in q.patients_of(ctx.corpus, series)]
    return format_rows(req.get("format"), columns, rows)


def _study_rows(ctx: Backend, req: Request, series: list[Series]) -> list[Row]:
    v4 = req.family == "v4"
    return [
        q.study_row(ctx.corpus, study, count, v4=v4)
        for study, count in q.studies_of(ctx.corpus, series)
    ]


def _patient_filters(req: Request) -> list[q.Filter]:
    filters = _collection_filter(req)
    filters += q.field_filter([(req.get("PatientID"), lambda s: s.patient_id)], upper=True)
    return filters


@endpoint(
    "getPatientStudy",
    ALL,
    auth="swallow",
    allowed=("Collection", "PatientID", "StudyInstanceUID", "format"),
)
def get_patient_study(ctx: Backend, req: Request) -> Response:
    """Studies, by collection, patient or study UID."""
    filters = _patient_filters(req)
    filters += q.field_filter([(req.get("StudyInstanceUID"), lambda s: s.study_uid)], upper=False)
    series = q.visible(ctx.corpus, req.sites, *filters)
    columns = q.STUDY_V4_COLUMNS if req.family == "v4" else q.STUDY_V1_COLUMNS
    return format_rows(req.get("format"), columns, _study_rows(ctx, req, series))


@endpoint(
    "NewStudiesInPatientCollection",
    ALL,
    auth="swallow",
    allowed=("Collection", "PatientID", "fromDate", "format"),
)
def new_studies_in_patient_collection(ctx: Backend, req: Request) -> Response:
    """Studies with series released since a date."""
    error, since = _released_since(req)
    if error is not None:
        return error
    columns = q.STUDY_V4_COLUMNS if req.family == "v4" else q.STUDY_V1_COLUMNS
    if since is None:
        return format_rows(req.get("format"), columns, [])
    series = q.visible(ctx.corpus, req.sites, *_patient_filters(req), since)
    return format_rows(req.get("format"), columns, _study_rows(ctx, req, series))


_SERIES_PARAMS = (
    "Collection", "format", "PatientID", "StudyInstanceUID", "Modality", "BodyPartExamined",
    "ManufacturerModelName", "Manufacturer", "SeriesInstanceUID",
)  # fmt: skip


@endpoint("getSeries", ALL, auth="swallow", allowed=_SERIES_PARAMS)
def get_series(ctx: Backend, req: Request) -> Response:
    """Series filtered by any of eight attributes (visible and authorized only)."""
    v4 = req.family == "v4"
    filters = _patient_filters(req)
    filters += q.field_filter(
        [
            (req.get("Modality"), lambda s: s.modality),
            (req.get("BodyPartExamined"), lambda s: s.body_part),
            (req.get("ManufacturerModelName"), lambda s: s.model_name),
            (req.get("Manufacturer"), lambda s: s.manufacturer),
        ],
        upper=v4,
    )
    filters += q.field_filter(
        [
            (req.get("StudyInstanceUID"), lambda s: s.study_uid),
            (req.get("SeriesInstanceUID"), lambda s: s.series_uid),
        ],
        upper=False,
    )
    series = q.visible(ctx.corpus, req.sites, *filters)
    if v4:
        rows = [q.series_row_v4(ctx.corpus, s) for s in series]
        return format_rows(req.get("format"), q.SERIES_V4_COLUMNS, rows)
    rows = [q.series_row_v1(ctx.corpus, s) for s in series]
    return format_rows(req.get("format"), q.SERIES_V1_COLUMNS, rows)


@endpoint(
    "getUpdatedSeries",
    ALL,
    auth={"v1": "guest", "v2": "swallow", "v4": "public"},
    allowed=("fromDate", "format"),
)
def get_updated_series(ctx: Backend, req: Request) -> Response:
    """Series released after midnight of ``fromDate`` (v1 ``dd/MM/yyyy``, v4 ``MM-dd-yyyy``).

    ``s.date_released > STR_TO_DATE(:fromDate)`` (v4) and ``s.dateReleased > ?`` with a
    ``java.sql.Date`` (v1/v2): a datetime against midnight, so the day itself counts unless the
    release was exactly at midnight.
    """
    v4 = req.family == "v4"
    raw = req.get("fromDate") or ("01-01-1900" if v4 else "01/01/1900")
    since = q.parse_date(raw, "%m-%d-%Y" if v4 else "%d/%m/%Y")
    if since is None:
        series: list[Series] = []
    else:
        midnight = q.midnight(since)
        series = q.visible(ctx.corpus, req.sites, lambda s: s.date_released > midnight)
    if v4:
        rows = [q.series_row_v4(ctx.corpus, s) for s in series]
        return format_rows(req.get("format"), q.SERIES_V4_COLUMNS, rows)
    rows = [q.series_row_v1(ctx.corpus, s, q.UPDATED_V1_COLUMNS) for s in series]
    return format_rows(req.get("format"), q.UPDATED_V1_COLUMNS, rows)


@endpoint("getSOPInstanceUIDs", ALL, auth="swallow", allowed=("SeriesInstanceUID", "format"))
def get_sop_instance_uids(ctx: Backend, req: Request) -> Response:
    """SOP Instance UIDs of a series in DB order; the UID parameter is upper-cased.

    v4 (``InstanceDAOImpl#getImages_v4``) has no visibility and no authorization filter: the
    token is read and then ignored, so a hidden or private series lists its images. v1/v2
    (``getImages``) filter by authorized collection only, never by visibility, and find
    nothing without authorization.
    """
    uid = req.get("SeriesInstanceUID")
    if uid is None:
        return bad_request(REQUIRED_SERIES)
    wanted = uid.upper()
    series = [
        s
        for s in ctx.corpus.series
        if s.series_uid.upper() == wanted and (req.family == "v4" or s.collection in req.sites)
    ]
    sops = [i.sop_uid for s in series for i in ctx.corpus.images_of(s.series_uid)]
    return format_values(req.get("format"), "SOPInstanceUID", sops)


@endpoint(
    "getSeriesSize",
    ALL,
    auth={"v1": "guest", "v2": "swallow", "v4": "public"},
    allowed=("SeriesInstanceUID", "format"),
)
def get_series_size(ctx: Backend, req: Request) -> Response:
    """Total ``dicom_size`` and image count (v1 ignores authorization; v4 ignores UID case)."""
    uid = req.get("SeriesInstanceUID")
    if uid is None:
        return bad_request(REQUIRED_SERIES)
    v4 = req.family == "v4"
    matches = [
        s
        for s in ctx.corpus.series
        if s.visibility == "1"
        and (s.series_uid.upper() == uid.upper() if v4 else s.series_uid == uid)
        and (s.collection in req.sites or req.family == "v1")
    ]
    rows: list[Row] = []
    for s in matches:
        count, size = q.series_stats(ctx.corpus, s.series_uid)
        rows.append((decimal6(size) if v4 else size, count))
    return format_rows(req.get("format"), ("TotalSizeInBytes", "ObjectCount"), rows)


_METADATA_COLUMNS = (
    "Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID",
    "Study UID", "Study Description", "Study Date", "Series Description", "Manufacturer",
    "Modality", "SOP Class UID", "Number of Images", "File Size", "File Location",
    "Series Number", "License Name", "License URL", "Annotation Size", "Date Released",
    "Series Date", "Protocol Name", "Body Part Examined", "Annotations Flag",
    "Manufacturer Model Name", "Software Versions", "TimeStamp",
)  # fmt: skip


def _clean(value: str | None) -> str | None:
    # v1 getSeriesMetaData strips descriptions to [a-zA-Z0-9 .-].
    return None if value is None else re.sub(r"[^a-zA-Z0-9 .-]", "", value)


@endpoint("getSeriesMetaData", ("v1", "v2"), auth="swallow")
def get_series_metadata_pretty(ctx: Backend, req: Request) -> Response:
    """One series' metadata with "pretty" keys; every value a string; 204 if inaccessible."""
    uid = req.get("SeriesInstanceUID")
    if uid is None:
        return bad_request(REQUIRED_SERIES)
    series = q.visible(ctx.corpus, req.sites, lambda s: s.series_uid == uid)
    if not series:
        return Response(204)
    s = series[0]
    study = ctx.corpus.study(s.study_uid)
    count, size = q.series_stats(ctx.corpus, s.series_uid)
    number = decimal6(s.series_number)
    row: Row = (
        uid, s.collection, s.third_party, s.doi, s.patient_id, s.study_uid,
        _clean(study.description if study else None),
        mdy(study.study_date) if study else None,
        _clean(s.description),
        None if s.manufacturer is None else s.manufacturer.replace(",", " "),
        s.modality, s.sop_class_uid, str(count), str(size or 0),
        study.study_id if study else None,  # "File Location" really holds the StudyID
        None if number is None else str(number),
        s.license_name, s.license_url, "0",
        java_date_string(s.date_released), java_date_string(s.series_date),
        s.protocol_name, s.body_part,
        "true" if s.annotations_flag else "false",
        s.model_name, s.software_versions, java_date_string(s.max_submission),
    )  # fmt: skip
    return format_rows(req.get("format"), _METADATA_COLUMNS, [row])


_METADATA_V4_COLUMNS = (
    "PatientID", "PatientName", "PatientSex", "EthnicGroup", "Phantom", "SpeciesCode",
    "SpeciesDescription", "StudyInstanceUID", "StudyDate", "StudyDesc",
    "AdmittingDiagnosisDescription", "StudyID", "PatientAge", "LongitudinalTemporalEventType",
    "LongitudinalTemporalOffsetFromEvent", "SeriesInstanceUID", "Collection", "Site", "Modality",
    "ProtocolName", "SeriesDate", "SeriesDescription", "BodyPartExamined", "SeriesNumber",
    "AnnotationsFlag", "Manufacturer", "ManufacturerModelName", "PixelSpacing(mm)-Row",
    "SliceThickness(mm)", "SoftwareVersions", "ImageCount", "MaxSubmissionTimestamp",
    "LicenseName", "LicenseURI", "DataDescriptionURI", "FileSize", "ReleasedStatus",
    "DateReleased", "ThirdPartyAnalysis", "Authorized",
)  # fmt: skip


def _metadata_v4_row(ctx: Backend, s: Series) -> Row:
    # The native query declares scalars: everything is a string except the live
    # COUNT(*) and SUM(dicom_size), which are Longs; Authorized is the string "1".
    study = ctx.corpus.study(s.study_uid)
    p = ctx.corpus.patient(s.collection, s.patient_id)
    count, size = q.series_stats(ctx.corpus, s.series_uid)

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return (
        s.patient_id, text(p and p.name), text(p and p.sex), text(p and p.ethnic_group),
        text(p and p.phantom), text(p and p.species_code), text(p and p.species_description),
        s.study_uid, mdy(study.study_date) if study else None, text(study and study.description),
        text(study and study.admitting_diagnosis), text(study and study.study_id),
        text(study and study.patient_age), text(study and study.temporal_event_type),
        text(study and study.temporal_offset), s.series_uid, s.collection, s.site, s.modality,
        s.protocol_name, mdy(s.series_date), s.description, s.body_part,
        text(decimal6(s.series_number)),
        None if s.annotations_flag is None else str(s.annotations_flag).lower(),
        s.manufacturer, s.model_name,
        # GROUP_CONCAT(DISTINCT ...) of decimal columns: a string such as "2.500000".
        text(decimal6(s.pixel_spacing)), text(decimal6(s.slice_thickness)),
        s.software_versions, count, mdy(s.max_submission), s.license_name, s.license_url,
        s.doi, size, s.released_status, mdy(s.date_released), s.third_party, "1",
    )  # fmt: skip


@endpoint("getSeriesMetadata", ("v4",), method="POST", param_kind="form")
def get_series_metadata_v4(ctx: Backend, req: Request) -> Response:
    """Combined patient/study/series metadata; ``list`` repeated or comma-joined; CSV default."""
    values = req.all("list")
    if not values:
        return bad_request(
            "A form parameter, list, containing at least one SeriesInstanceUID is required."
        )
    rows: list[Row] = []
    for value in values:
        # getCombinedDataBySeries_v4 keeps only [0-9,.] and splits on commas.
        wanted = {u.upper() for u in re.sub(r"[^0-9,.]", "", value).split(",") if u}
        series = q.visible(ctx.corpus, req.sites, q.uid_in(wanted))
        rows += [_metadata_v4_row(ctx, s) for s in series if ctx.corpus.images_of(s.series_uid)]
    fmt = req.get("format")
    if fmt is None or fmt.upper() == "CSV":
        fmt = "CSV-DOWNLOAD"
    return format_rows(fmt, _METADATA_V4_COLUMNS, rows)

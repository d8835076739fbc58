"""The "Advanced" family and v4 extras: manifests, DOIs, licenses, descriptions, counts (§6, §7)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from nbia_audit.emulator import queries as q
from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.model import Series
from nbia_audit.emulator.routes import Request, endpoint
from nbia_audit.emulator.wire import (
    MANIFEST_TYPE,
    Response,
    Row,
    format_rows,
    java_timestamp,
    json_body,
    manifest,
    server_error,
)

JSON = "application/json"


def _manifest_response(ctx: Backend, uids: list[str], annotation: str, basket: str) -> Response:
    body = manifest(uids, annotation, basket, ctx.download_server_url)
    return Response(200, body, MANIFEST_TYPE)


def _basket_id() -> str:
    return f"manifest-{int(time.time() * 1000)}.tcia"


@endpoint("getManifestTextV2", ("adv",), method="POST", auth="public", param_kind="form")
def get_manifest_text_v2(ctx: Backend, req: Request) -> Response:
    """Echo ``list`` into a manifest: no validation, deduplication or access check (§6.2)."""
    return _manifest_text(ctx, req)


@endpoint(
    "getManifestText",
    ("v4",),
    method="POST",
    auth="public",
    allowed=("list", "includeAnnotation"),
    param_kind="form",
)
def get_manifest_text(ctx: Backend, req: Request) -> Response:
    """v4 twin of ``getManifestTextV2`` (strict form parameters)."""
    return _manifest_text(ctx, req)


def _manifest_text(ctx: Backend, req: Request) -> Response:
    annotation = req.get("includeAnnotation")
    if annotation is None or not req.all("list"):
        return server_error()  # annotation.equalsIgnoreCase / the list loop on null: NPE
    return _manifest_response(ctx, req.all("list"), annotation, _basket_id())


def _split(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


@endpoint(
    "getManifestFromPatientStudySeries",
    ("adv", "v4"),
    method="POST",
    auth="public",
    allowed=("patientIDs", "studyUIDs", "seriesUIDs", "anyOrAll", "includeAnnotation"),
    param_kind="form",
)
def get_manifest_from_patient_study_series(ctx: Backend, req: Request) -> Response:
    """Union of every series matching a patient, study or series (no visibility filter)."""
    patients, studies = _split(req.get("patientIDs")), _split(req.get("studyUIDs"))
    wanted = _split(req.get("seriesUIDs"))
    uids = [
        s.series_uid
        for s in ctx.corpus.series
        if s.patient_id in patients or s.study_uid in studies or s.series_uid in wanted
    ]
    annotation = req.get("includeAnnotation") or "true"
    return _manifest_response(ctx, uids, annotation, _basket_id())


@endpoint(
    "getManifestForCollection",
    ("v4",),
    method="POST",
    auth="public",
    allowed=("collection", "visibility", "includeAnnotation"),
    param_kind="form",
)
def get_manifest_for_collection(ctx: Backend, req: Request) -> Response:
    """Every series of a collection with a visibility (default 1; 13 means any)."""
    collection = req.get("collection") or ""
    visibility = req.get("visibility") or "1"
    uids = [
        s.series_uid
        for s in ctx.corpus.series
        if s.collection == collection and (visibility == "13" or s.visibility == visibility)
    ]
    annotation = req.get("includeAnnotation") or "true"
    basket = f"{collection}-{datetime.now().strftime('%Y-%m-%d_%H-%M')}.tcia"
    return _manifest_response(ctx, uids, annotation, basket)


@endpoint(
    "getCollectionOrSeriesForDOI",
    ("adv", "v4"),
    method="POST",
    auth="swallow",
    allowed=("DOI", "CollectionOrSeries"),
    param_kind="form",
)
def get_collection_or_series_for_doi(ctx: Backend, req: Request) -> Response:
    """Collections (or series) whose ``description_uri`` equals the DOI; Jackson, NON_NULL.

    No visibility filter in either version; a missing or empty DOI matches everything.
    """
    doi = req.get("DOI")
    per_series = (req.get("CollectionOrSeries") or "").lower() == "series"
    out: list[dict[str, object]] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for s in ctx.corpus.series:
        # description_uri = :doi under MySQL's default case-insensitive collation.
        if s.collection not in req.sites or (doi and s.doi.lower() != doi.lower()):
            continue
        key = (s.collection, s.third_party, s.series_uid if per_series else None)
        if key in seen:
            continue
        seen.add(key)
        item: dict[str, object] = {"collection": s.collection}
        if per_series:
            item["seriesInstanceUID"] = s.series_uid
        if s.third_party is not None:
            item["thirdPartyAnanlysis"] = s.third_party  # sic (DOIDTO)
        if req.family == "v4":
            item["authorized"] = 1  # only v4 selects the authorized column (supplement §5)
        out.append(item)
    return Response(200, json_body(out), JSON)


@endpoint("getLicenses", ("adv",), auth="public")
def get_licenses(ctx: Backend, req: Request) -> Response:
    """Every license; Jackson with default null inclusion, DTO field order."""
    out = [
        {
            "longName": lic.long_name,
            "id": lic.id,
            "shortName": lic.short_name,
            "licenseURL": lic.url,
            "licenseText": lic.text,
            "commercialUse": lic.commercial_use,
        }
        for lic in ctx.corpus.licenses
    ]
    return Response(200, json_body(out), JSON)


@endpoint(
    "getCollectionDescriptions",
    ("adv", "v4"),
    auth={"adv": "direct", "v4": "swallow"},
    allowed=("collectionName",),
)
def get_collection_descriptions(ctx: Backend, req: Request) -> Response:
    """Descriptions of the collections the caller may access (v4 drops three keys).

    ``CollectionDescDAOImpl`` strips the authorized list and checks ``collectionName`` with
    Java's ``List.contains``: an exact, case-sensitive match (ll.106-110). A v4 token that
    fails is swallowed, leaving the list null, and the DAO's ``replaceAll`` on it throws: 500
    (ll.106, 169).
    """
    if req.user == "":
        return server_error()
    name = req.get("collectionName")
    out: list[dict[str, object]] = []
    for c in ctx.corpus.collections:
        if c.name not in req.sites or (name and c.name != name):
            continue
        lic = ctx.corpus.license(c.license)
        item: dict[str, object] = {"description": c.description, "id": c.desc_id}
        if req.family != "v4":
            item["collectionDescTimestamp"] = c.updated_ms
        item["collectionName"] = c.name
        if req.family != "v4":
            item["userName"] = None
            item["licenseId"] = lic.id if lic else None
        item["descriptionURI"] = c.doi
        out.append(item)
    return Response(200, json_body(out), JSON)


_METADATA2_COLUMNS = (
    "Subject ID", "Study UID", "Study Description", "Study Date", "Series ID",
    "Series Description", "Number of images", "File Size (Bytes)", "Collection Name", "Modality",
    "Manufacturer", "3rd Party Analysis", "Data Description URI", "Series Number",
    "License Name", "License URL", "Date Released", "Series Date", "Protocol Name",
    "Body Part Examined", "Annotations Flag", "Manufacturer Model Name", "Software Versions",
    "TimeStamp",
)  # fmt: skip


@endpoint("getSeriesMetadata2", ("adv",), method="POST", param_kind="form")
def get_series_metadata2(ctx: Backend, req: Request) -> Response:
    """Quoted-CSV metadata; only the first ``list`` value counts, split on commas."""
    values = req.all("list")
    wanted = set(values[0].split(",")) if values else set()
    rows: list[Row] = []
    for s in q.visible(ctx.corpus, req.sites, lambda s: s.series_uid in wanted):
        study = ctx.corpus.study(s.study_uid)
        count, size = q.series_stats(ctx.corpus, s.series_uid)
        rows.append(
            (
                s.patient_id,
                s.study_uid,
                study.description if study else None,
                study.study_date.strftime("%Y-%m-%d") if study and study.study_date else None,
                s.series_uid,
                s.description,
                count,
                size or 0,
                s.collection,
                s.modality,
                s.manufacturer,
                s.third_party,
                s.doi,
                s.series_number,
                s.license_name,
                s.license_url,
                s.date_released.strftime("%Y-%m-%d"),
                s.series_date.strftime("%Y-%m-%d") if s.series_date else None,
                s.protocol_name,
                s.body_part,
                s.annotations_flag,
                s.model_name,
                s.software_versions,
                java_timestamp(s.date_released),
            )  # fmt: skip
        )
    return format_rows("CSV-DOWNLOAD", _METADATA2_COLUMNS, rows)


_COUNT_FIELDS: dict[str, Callable[[Series], str | None]] = {
    "Collection": lambda s: s.collection,
    "Modality": lambda s: s.modality,
    "BodyPart": lambda s: (s.body_part or "NOT SPECIFIED").upper(),
    "Manufacturer": lambda s: s.manufacturer,
    "Species": lambda s: "337915000",
}


def _counts(ctx: Backend, req: Request, field: str) -> list[tuple[str, int]]:
    filters = q.field_filter(
        [
            (req.get("Collection"), lambda s: s.collection),
            (req.get("Modality"), lambda s: s.modality),
            (req.get("BodyPartExamined"), lambda s: s.body_part),
        ],
        upper=True,
    )
    patients: dict[str, set[tuple[str, str]]] = {}
    for s in q.visible(ctx.corpus, req.sites, *filters):
        value = _COUNT_FIELDS[field](s)
        if value is not None:
            patients.setdefault(value, set()).add((s.collection, s.patient_id))
    return [(v, len(patients[v])) for v in sorted(patients)]


def _register_counts(field: str, allowed: tuple[str, ...] | None) -> None:
    column = "BodyPartExamined" if field == "BodyPart" else field

    def v4_counts(ctx: Backend, req: Request) -> Response:
        rows: list[Row] = [(v, n, 1) for v, n in _counts(ctx, req, field)]
        return format_rows("JSON", (column, "Count", "Authorized"), rows)

    def adv_counts(ctx: Backend, req: Request) -> Response:
        # ValuesAndCountsDTO {criteria, count} with the count as a String (real samples).
        out = [{"criteria": v, "count": str(n)} for v, n in _counts(ctx, req, field)]
        return Response(200, json_body(out), JSON)

    name = f"get{field}ValuesAndCounts"
    endpoint(name, ("v4",), allowed=allowed)(v4_counts)
    endpoint(name, ("adv",))(adv_counts)


_register_counts("Collection", None)  # this v4 class has no strict check
_register_counts("Modality", ("Collection", "BodyPartExamined"))
_register_counts("BodyPart", ("Collection", "Modality"))
_register_counts("Manufacturer", ("Collection", "Modality", "BodyPartExamined"))
_register_counts("Species", None)

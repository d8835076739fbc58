"""Endpoints third-party clients call that nbia-audit does not: DICOM tags, ``getDCMImage``,
the unversioned ``getManifestForCollection``, ``getSpeciesTax``, ``getManufacturerTree``
(supplement §7.7 cites the resources and DAOs).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from nbia_audit.emulator import queries as q
from nbia_audit.emulator.api_download import ALL, OCTET, REQUIRED_SID, new_file_names
from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.model import Image, Series
from nbia_audit.emulator.routes import Request, endpoint
from nbia_audit.emulator.wire import (
    GENERIC_ERROR,
    MANIFEST_TYPE,
    Response,
    bad_request,
    json_body,
    manifest,
    text,
)
from nbia_audit.emulator.zipstream import Entry, Sink, stream_zip

JSON = "application/json"
# dcm4che 1.x getStrings() has no string form for these VRs: the value is null.
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ", "AT"})


# -- DICOM tags: NCIADicomTextObject#getTagElements ------------------------------------------
def _value_string(element: DataElement) -> str | None:
    if element.tag.group >= 0x6000:
        return "..."  # (tag & 0xffff0000) >= 0x60000000
    if element.VR in _BINARY_VRS or element.value is None:
        return None
    values = element.value if isinstance(element.value, MultiValue) else [element.value]
    return "\\".join(str(v) for v in values)


def _walk(dataset: Dataset, prefix: str) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = []
    for element in dataset:
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        name = "" if element.tag.is_private else element.name
        value = _value_string(element)
        rows.append({"element": prefix + tag, "name": name, "data": value})
        if element.VR == "SQ":
            for item in element.value:
                rows += _walk(item, prefix + ">")
            rows.append({"element": prefix + tag, "name": "End " + name, "data": value})
    return rows


def dicom_tags(data: bytes) -> list[dict[str, str | None]]:
    """Tag rows of one file: meta header then data set, stopping before Pixel Data."""
    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return _walk(dataset.file_meta, "") + _walk(dataset, "")


def _tags_response(ctx: Backend, image: Image) -> Response:
    # Jackson over DicomTagDTO: element, name, data (nulls kept).
    return Response(200, json_body(dicom_tags(ctx.corpus.image_bytes(image.sop_uid))), JSON)


def _denied(uid: str | None) -> Response:
    return bad_request(
        f"The user has not been granted the access to image with given SeriesInstanceUID,{uid}. "
        "Please contact System Admin to resolve this issue."
    )


def _accessible(ctx: Backend, req: Request, uid: str | None) -> Series | None:
    series = ctx.corpus.series_by_uid(uid) if uid is not None else None
    if series is None or series.visibility != "1" or series.collection not in req.sites:
        return None
    return series


@endpoint("getDicomTags", ("v4", "adv"), allowed=("SeriesUID",))
def get_dicom_tags(ctx: Backend, req: Request) -> Response:
    """The first image's header as ``[{element, name, data}]``; 200 empty with no image."""
    uid = req.get("SeriesUID")
    series = _accessible(ctx, req, uid)
    if series is None:
        return _denied(uid)
    images = ctx.corpus.images_of(series.series_uid)
    if not images:
        return Response(200)
    return _tags_response(ctx, images[0])


@endpoint("getDicomTagsByImageID", ("v4", "adv"), allowed=("imageID",))
def get_dicom_tags_by_image_id(ctx: Backend, req: Request) -> Response:
    """Tags of the image with that ``image_pk_id``; no access check at all (the sites are
    looked up and never used)."""
    raw = req.get("imageID")
    try:
        pk = int(raw) if raw is not None else None
    except ValueError:
        # @QueryParam Integer: Jersey's ParamException is a 404, through the mapper a 500.
        return text(500, f"{GENERIC_ERROR}\nHTTP 404 Not Found", "text/plain")
    image = ctx.corpus.image_by_pk(pk) if pk is not None else None
    if image is None:
        return text(500, f"{GENERIC_ERROR} image not found", JSON)
    return _tags_response(ctx, image)


# -- getDCMImage: ImageDAO2Impl#getImageNamesBySeriesUid ----------------------------------------
def _reader(ctx: Backend, sop_uid: str) -> Callable[[], bytes]:
    return lambda: ctx.corpus.image_bytes(sop_uid)


@endpoint("getDCMImage", ALL, allowed=("SeriesInstanceUID", "IncludeAnnotation", "MD5Verification"))
def get_dcm_image(ctx: Backend, req: Request) -> Response:
    """A ZIP of the series under its new file names, no LICENSE; ``MD5Verification=true``
    appends ``md5hashes.csv`` in file order (a NULL digest is written as ``null``)."""
    uid = req.get("SeriesInstanceUID")
    if uid is None:
        return bad_request(REQUIRED_SID)
    series = _accessible(ctx, req, uid)
    if series is None:
        return bad_request(f"Image with given SeriesInstanceUID,{uid}, is not in public domain.")
    named = new_file_names(list(ctx.corpus.images_of(series.series_uid)))
    entries: list[Entry] = [(name, _reader(ctx, image.sop_uid)) for image, name in named]
    if (req.get("MD5Verification") or "").lower() == "true":
        lines = "".join(f"{name},{image.stored_md5}\n" for image, name in named)
        csv = ("Filename,MD5Hash\n" + lines).replace(",None\n", ",null\n").encode("utf-8")
        entries.append(("md5hashes.csv", lambda: csv))

    def write(sink: Sink) -> None:
        stream_zip(sink, entries)

    disposition = ("Content-Disposition", f'attachment; filename="{uid}.zip"')
    return Response(200, content_type=OCTET, headers=(disposition,), stream=write)


# -- unversioned getManifestForCollection -------------------------------------------------------
@endpoint("getManifestForCollection", ("adv",), method="POST", auth="public", param_kind="form")
def get_manifest_for_collection(ctx: Backend, req: Request) -> Response:
    """Series of a collection with a visibility (default ``1``, ``13`` any), as a manifest."""
    collection = req.get("collection")
    visibility = req.get("visibility") or "1"
    annotation = req.get("includeAnnotation") or "true"
    uids = [
        s.series_uid
        for s in ctx.corpus.series
        if collection is not None
        and s.collection.lower() == collection.lower()
        and (visibility == "13" or s.visibility == visibility)
    ]
    basket = f"{collection}-{datetime.now().strftime('%Y-%m-%d_%H-%M')}.tcia"
    return Response(200, manifest(uids, annotation, basket, ctx.download_server_url), MANIFEST_TYPE)


# -- v4/getImageDrillDown: ImageDAOImpl#findImagesbySeriesPkID_v4, #searchImagesbySql ---------
@endpoint("getImageDrillDown", ("v4",), method="POST", allowed=("list",), param_kind="form")
def get_image_drill_down(ctx: Backend, req: Request) -> Response:
    """``ImageDTO`` beans of every image of these ``general_series_pk_id`` values.

    No visibility or authorization filter. Jackson, in field declaration order, nulls kept;
    ``fileURI`` is the server's storage path; ``project`` and ``siteName`` are never set;
    ``acquisitionNumber`` is filled from ``instance_number`` (the DAO reads column 6 twice);
    sorted by InstanceNumber (``ImageDTO#compareTo``).
    """
    try:
        pks = {int(v) for v in req.all("list")}
    except ValueError:
        return text(500, f"{GENERIC_ERROR}\nFor input string", "text/plain")
    rows: list[tuple[int, dict[str, object]]] = []
    corpus = ctx.corpus
    for s in corpus.series:
        if corpus.pk(s.series_uid) not in pks:
            continue
        for image in corpus.images_of(s.series_uid):
            if image.instance_number is None:
                return text(500, f"{GENERIC_ERROR}\nnull", "text/plain")  # BigInteger null
            item: dict[str, object] = {
                "imagePkId": corpus.image_pk(image.sop_uid),
                "contentDate": None,
                "contentTime": "",
                "seriesPkId": corpus.pk(s.series_uid),
                "instanceNumber": image.instance_number,
                "sopInstanceUid": image.sop_uid,
                "seriesInstanceUid": s.series_uid,
                "studyInstanceUid": s.study_uid,
                "size": image.size,
                "fileURI": f"/usr/local/tomcat/storage/{s.collection}/{image.sop_uid}.dcm",
                "project": None,
                "siteName": None,
                "frameNum": 0,
                "acquisitionNumber": image.instance_number,
            }
            rows.append((image.instance_number, item))
    rows.sort(key=lambda row: row[0])
    return Response(200, json_body([item for _, item in rows]), JSON)


# -- getSpeciesTax, getManufacturerTree (ValueAndCountDAOImpl) ----------------------------------
DEFAULT_SPECIES = ("337915000", "Homo sapiens")  # NCIAConfig species code / description


@endpoint("getSpeciesTax", ("v4", "adv"), auth="public")
def get_species_tax(ctx: Backend, req: Request) -> Response:
    """Distinct species of patients with a visible series, plus the default one if absent."""
    seen: list[tuple[str, str]] = []
    for s in ctx.corpus.series:
        patient = ctx.corpus.patient(s.collection, s.patient_id)
        if s.visibility != "1" or patient is None or patient.species_code is None:
            continue
        pair = (patient.species_code, patient.species_description or "")
        if pair not in seen:
            seen.append(pair)
    if not any(code.lower() == DEFAULT_SPECIES[0] for code, _ in seen):
        seen.append(DEFAULT_SPECIES)
    body = [{"speciesCode": code, "speciesDescription": desc} for code, desc in seen]
    return Response(200, json_body(body), JSON)


def _node(criteria: str, value: str, children: list[dict[str, object]]) -> dict[str, object]:
    return {"data": {"criteria": criteria, "value": value}, "children": children}


@endpoint("getManufacturerTree", ("v4", "adv"), auth="public")
def get_manufacturer_tree(ctx: Backend, req: Request) -> Response:
    """Manufacturer > model > software version of visible series (all three non-null)."""
    tree: dict[str, dict[str, list[str]]] = {}
    for s in q.visible(ctx.corpus, ctx.guest_sites):
        if s.manufacturer is None or s.model_name is None or s.software_versions is None:
            continue
        versions = tree.setdefault(s.manufacturer, {}).setdefault(s.model_name, [])
        if s.software_versions not in versions:
            versions.append(s.software_versions)
    children = [
        _node(
            "Manufacturer",
            man,
            [
                _node("Model", model, [_node("Software Ver.", v, []) for v in versions])
                for model, versions in models.items()
            ],
        )
        for man, models in sorted(tree.items())
    ]
    return Response(200, json_body(_node("root", "All Manufactures", children)), JSON)

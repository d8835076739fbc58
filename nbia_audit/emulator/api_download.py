"""Image downloads, per-image MD5s and ``getMD5Hierarchy`` (protocol §1, §2)."""

from __future__ import annotations

from collections.abc import Callable

from nbia_audit.emulator import hierarchy
from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.model import Image, Series
from nbia_audit.emulator.routes import Family, Request, endpoint
from nbia_audit.emulator.wire import Response, bad_request, csv_plain, server_error
from nbia_audit.emulator.zipstream import Entry, Sink, java_hashmap_order, stream_zip

ALL: tuple[Family, ...] = ("v1", "v2", "v4")
OCTET = "application/octet-stream"
REQUIRED_SID = "A parameter, SeriesInstanceUID, is required for this API call."
# ImageDAO2Impl#getLicenseContent with the shipped `licenseText` property.
LICENSE_TEXT = (
    "License Information. The {0} collection is distributed under the {1} at {2} "
    "By downloading the data, you agree to abide by terms of this license."
)


def _denied(req: Request, uid: str) -> Response:
    # AuthorizationService#isGivenUserHasAccess: the text depends on the API family (§2.1).
    if req.family == "v1":
        message = f"Image with given SeriesInstanceUID,{uid}, is not in public domain."
    else:
        message = (
            f"The user has not been granted the access to image with given "
            f"SeriesInstanceUID,{uid}. Please contact System Admin to resolve this issue."
        )
    return bad_request(message)


def _accessible(ctx: Backend, req: Request, uid: str) -> Series | None:
    series = ctx.corpus.series_by_uid(uid)
    if series is None or series.visibility != "1" or series.collection not in req.sites:
        return None
    return series


def license_content(ctx: Backend, series: Series) -> str | None:
    """``ImageDAO2Impl#getLicenseContent`` (ll.448-508) with the shipped ``licenseText``.

    The query joins ``license.long_name = general_series.license_name``: a series whose license
    name matches no license row (or is NULL) has no license text. The deployment's optional
    user-agreement file is appended after a newline; with neither, the content is null.
    """
    lic = ctx.corpus.license_by_long_name(series.license_name)
    text = ""
    if lic is not None:
        text = LICENSE_TEXT.format(
            series.collection,
            lic.short_name or "Not Specified",
            series.license_url or "Not Specified",
        )
    elif ctx.user_agreement is None:
        return None
    if ctx.user_agreement is not None:
        text += "\n" + ctx.user_agreement
    return text


def _provider(ctx: Backend, sop_uid: str) -> Callable[[], bytes]:
    return lambda: ctx.corpus.image_bytes(sop_uid)


def new_file_names(images: list[Image]) -> list[tuple[Image, str]]:
    """``ImageDAO2Impl#setNewFileNames`` after ``Collections.sort`` (protocol §2.6).

    ``ImageDTO2.compareTo`` reads InstanceNumber where it means AcquisitionNumber, so the sort
    key is InstanceNumber alone (nulls first). Padding widths count value *changes*.
    """
    ordered = sorted(images, key=lambda i: (i.instance_number is not None, i.instance_number or 0))
    if not ordered:
        return []
    acc: int | None = ordered[0].acquisition_number or 0
    ins: int | None = ordered[0].instance_number or 0
    acc_count = ins_count = 1
    for image in ordered:
        if image.acquisition_number is not None and image.acquisition_number != acc:
            acc, acc_count = image.acquisition_number, acc_count + 1
        if image.instance_number is not None and image.instance_number != ins:
            ins, ins_count = image.instance_number, ins_count + 1
    acc_pad, ins_pad = len(str(acc_count)), len(str(ins_count))
    acc = ordered[0].acquisition_number if ordered[0].acquisition_number is not None else 0
    acc_count, ins_count = 1, 0
    out = []
    for image in ordered:
        current = image.acquisition_number if image.acquisition_number is not None else 0
        if current != acc:
            acc, acc_count, ins_count = image.acquisition_number, acc_count + 1, 1
        else:
            ins_count += 1
        out.append((image, f"{acc_count:0{acc_pad}d}-{ins_count:0{ins_pad}d}.dcm"))
    return out


def _md5_entry(rows: list[tuple[str, str | None]]) -> Entry:
    # md5hashes.csv: FormatOutput.toCsv over a HashMap's entries (protocol §2.3).
    by_name = dict(rows)
    ordered = [(name, by_name[name]) for name in java_hashmap_order([n for n, _ in rows])]
    body = csv_plain(("Filename", "MD5Hash"), ordered)
    return ("md5hashes.csv", lambda: body)


def _series_zip(
    ctx: Backend,
    req: Request,
    series: Series,
    *,
    license_entry: bool,
    md5_csv: bool,
    new_names: bool,
    null_md5_ends_zip: bool = False,
) -> Response:
    images = list(ctx.corpus.images_of(series.series_uid))
    named = (
        new_file_names(images)
        if new_names
        else [(image, f"{n:08d}.dcm") for n, image in enumerate(images, start=1)]
    )
    if req.drop_images:
        # A failure mid-stream is caught and logged; the ZIP is closed normally, missing its
        # last images and the CSV that would have followed them (§2.1).
        named, md5_csv = named[: max(0, len(named) - req.drop_images)], False
    if null_md5_ends_zip and req.family == "v4" and not new_names:
        # V4_getImage.java:126 calls row[1].toString() on the stored MD5 before adding the
        # image: a NULL one throws, the catch closes the ZIP there, without the CSV.
        for index, (image, _) in enumerate(named):
            if image.stored_md5 is None:
                named, md5_csv = named[:index], False
                break
    entries: list[Entry] = []
    if license_entry:
        content = license_content(ctx, series)
        if content is None:
            # IOUtils.toInputStream(null) throws right after putNextEntry("LICENSE"). Inside
            # the try (v1, and the %08d branch of v2/v4) the ZIP is closed holding only an
            # empty LICENSE; outside it (NewFileNames on v2/v4) the exception leaves write()
            # before any byte is flushed and the mapper answers 500 (inference, §8).
            if new_names and req.family in ("v2", "v4"):
                return server_error()
            entries.append(("LICENSE", lambda: b""))
            return _zip_response(series, entries)
        body = content.encode("utf-8")
        entries.append(("LICENSE", lambda: body))
    entries += [(name, _provider(ctx, image.sop_uid)) for image, name in named]
    if md5_csv:
        entries.append(_md5_entry([(name, image.stored_md5) for image, name in named]))
    return _zip_response(series, entries)


def _zip_response(series: Series, entries: list[Entry]) -> Response:
    def write(sink: Sink) -> None:
        stream_zip(sink, entries)

    disposition = ("Content-Disposition", f'attachment; filename="{series.series_uid}.zip"')
    return Response(200, content_type=OCTET, headers=(disposition,), stream=write)


@endpoint(
    "getImage",
    ALL,
    allowed=("SeriesInstanceUID", "NewFileNames", "IncludeMD5"),
)
def get_image(ctx: Backend, req: Request) -> Response:
    """A series ZIP: LICENSE, images (``%08d.dcm`` or ``NewFileNames``), v4 CSV on request."""
    uid = req.get("SeriesInstanceUID")
    if uid is None:
        return bad_request(REQUIRED_SID)
    series = _accessible(ctx, req, uid)
    if series is None:
        return _denied(req, uid)
    include_md5 = req.family == "v4" and (req.get("IncludeMD5") or "").lower() == "yes"
    new_names = (req.get("NewFileNames") or "").lower() == "yes"
    return _series_zip(
        ctx,
        req,
        series,
        license_entry=True,
        md5_csv=include_md5,
        new_names=new_names,
        # Only V4_getImage reads the stored MD5 with toString(); V4_getImageWithMD5Hash puts
        # a NULL one into its CSV as it is.
        null_md5_ends_zip=True,
    )


@endpoint("getImageWithMD5Hash", ALL, allowed=("SeriesInstanceUID",))
def get_image_with_md5_hash(ctx: Backend, req: Request) -> Response:
    """A series ZIP without LICENSE, with ``md5hashes.csv`` last (protocol §2.3)."""
    uid = req.get("SeriesInstanceUID")
    if uid is None:
        return bad_request(REQUIRED_SID)
    series = _accessible(ctx, req, uid)
    if series is None:
        return _denied(req, uid)
    return _series_zip(ctx, req, series, license_entry=False, md5_csv=True, new_names=False)


@endpoint(
    "getSingleImage",
    ALL,
    allowed=("SeriesInstanceUID", "SOPInstanceUID"),
)
def get_single_image(ctx: Backend, req: Request) -> Response:
    """One image's file; an unknown or inaccessible one dereferences null (500)."""
    uid, sop = req.get("SeriesInstanceUID"), req.get("SOPInstanceUID")
    if uid is None or sop is None:
        return bad_request(
            "A parameter, SeriesInstanceUID and SOPInstanceUID, are required for this API call."
        )
    image = ctx.corpus.image_by_sop(sop)
    if image is None or image.series_uid != uid or _accessible(ctx, req, uid) is None:
        return server_error()
    disposition = ("Content-Disposition", f"attachment; filename={sop}.dcm")
    return Response(200, ctx.corpus.image_bytes(sop), "application/dicom", (disposition,))


def _stored_md5(ctx: Backend, req: Request, sop: str | None) -> Response:
    # ImageDAO2Impl#getImage(String, List): visible, authorized; else a null entity (200, empty).
    image = ctx.corpus.image_by_sop(sop) if sop is not None else None
    if image is None or _accessible(ctx, req, image.series_uid) is None:
        return Response(200, b"", "text/plain")
    return Response(200, (image.stored_md5 or "").encode("latin-1"), "text/plain")


@endpoint("getM5HashForImage", ("v1", "v2"))
def get_m5_hash_for_image(ctx: Backend, req: Request) -> Response:
    """The stored ``md5_digest`` of one image; note "M5" and ``SOPInstanceUid``."""
    return _stored_md5(ctx, req, req.get("SOPInstanceUid"))


@endpoint("getMD5HashForImage", ("v4",), allowed=("SOPInstanceUID",))
def get_md5_hash_for_image(ctx: Backend, req: Request) -> Response:
    """The stored ``md5_digest`` of one image (v4 spelling ``SOPInstanceUID``)."""
    return _stored_md5(ctx, req, req.get("SOPInstanceUID"))


@endpoint(
    "getMD5Hierarchy",
    ("v4", "adv"),
    method="POST",
    allowed=("SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Collection"),
    param_kind="form",
)
def get_md5_hierarchy(ctx: Backend, req: Request) -> Response:
    """The Merkle hash of a series, study, patient or collection (protocol §1.1 precedence)."""
    series, study = req.get("SeriesInstanceUID"), req.get("StudyInstanceUID")
    patient, collection = req.get("PatientID"), req.get("Collection")
    md5: str | None = ""
    if series:
        md5 = hierarchy.series_hash(ctx.corpus, series)
    if study:
        md5 = hierarchy.study_hash(ctx.corpus, study, req.sites)
    if patient:
        md5 = hierarchy.patient_hash(ctx.corpus, patient, collection, req.sites)
    if collection and not patient:
        md5 = hierarchy.collection_hash(ctx.corpus, ctx.md5_cache, collection)
    return Response(200, (md5 or "").encode("ascii"), "text/plain")

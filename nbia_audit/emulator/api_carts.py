"""Shared carts: create, delete, read raw, read visible contents, drill down (supplement §1)."""

from __future__ import annotations

from datetime import date, datetime

from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.model import Cart, Series
from nbia_audit.emulator.routes import Request, endpoint
from nbia_audit.emulator.wire import (
    Response,
    Row,
    bad_request,
    java_timestamp,
    json_array,
    json_body,
    mdy,
    server_error,
    text,
)

PLAIN = "text/plain"
CONTENTS_COLUMNS = (
    "SeriesInstanceUID", "StudyInstanceUID", "Modality", "ProtocolName", "SeriesDate",
    "SeriesDescription", "BodyPartExamined", "SeriesNumber", "AnnotationsFlag", "Collection",
    "PatientID", "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ImageCount",
    "Date Released",
)  # fmt: skip


def find_cart(corpus: Corpus, name: str) -> Cart | None:
    """The first cart whose name matches case-insensitively (no trimming), or None."""
    with corpus.lock:
        return next((c for c in corpus.carts if c.name.lower() == name.lower()), None)


def create_cart(
    corpus: Corpus,
    name: str,
    series_uids: list[str],
    user: str,
    sites: frozenset[str],
    *,
    comment: str | None = None,
    hyperlink: str | None = None,
) -> str | None:
    """``CreateSharedList``: all-or-nothing; returns the 400 message, or None on success."""
    with corpus.lock:
        for uid in series_uids:
            series = corpus.series_by_uid(uid)
            if series is None or series.visibility != "1" or series.collection not in sites:
                return "User does not have permission for all series in list"
        if any(c.name.strip().lower() == name.strip().lower() for c in corpus.carts):
            return "Duplicate list name"
        cart_id = max((c.id for c in corpus.carts), default=0) + 1
        cart = Cart(cart_id, name, tuple(series_uids), user, date.today(), comment, hyperlink)
        corpus.carts.append(cart)
        return None


@endpoint("createSharedList", ("adv",), method="POST", param_kind="form")
def create_shared_list(ctx: Backend, req: Request) -> Response:
    """Create a named cart of visible series the caller may see; ``text/plain`` answers."""
    uids, name = req.all("list"), req.get("name")
    if not uids or name is None:
        return server_error()  # validate() on a null list / name.trim() on null: NPEs
    error = create_cart(
        ctx.corpus,
        name,
        uids,
        req.user,
        req.sites,
        comment=req.get("description"),
        hyperlink=req.get("url"),
    )
    if error is not None:
        return text(400, error, PLAIN)
    return text(200, "List created", PLAIN)


@endpoint("deleteSharedList", ("adv",), method="POST", param_kind="form")
def delete_shared_list(ctx: Backend, req: Request) -> Response:
    """Delete a cart; only its owner may (a guest-owned cart: anyone acting as guest)."""
    cart = find_cart(ctx.corpus, req.get("name") or "")
    if cart is None:
        return text(400, "List name not found", PLAIN)
    if cart.user != req.user:
        return text(400, "Only the owner can delete a list", PLAIN)
    with ctx.corpus.lock:
        ctx.corpus.carts.remove(cart)
    return text(200, "List deleted", PLAIN)


@endpoint("getSharedList", ("adv",), method="POST", auth="public", param_kind="form")
def get_shared_list(ctx: Backend, req: Request) -> Response:
    """The raw stored cart (Jackson, nulls included); an unknown name is the body ``null``."""
    cart = find_cart(ctx.corpus, req.get("nameValue") or "")
    if cart is None:
        return Response(200, b"null", "application/json")
    midnight = datetime(cart.created.year, cart.created.month, cart.created.day)
    body = {
        "name": cart.name,
        "comment": cart.comment,
        "hyperlink": cart.hyperlink,
        "date": int(midnight.timestamp() * 1000),
        "id": cart.id,
        "userName": cart.user,
        "seriesInstanceUIDs": sorted(set(cart.series_uids)),  # a HashSet: arbitrary order
        "seriesInstanceUidsList": None,
        "usageCount": None,
        "dateString": cart.created.strftime("%Y-%m-%d"),
    }
    return Response(200, json_body(body), "application/json")


def _contents_row(corpus: Corpus, s: Series) -> Row:
    return (
        s.series_uid, s.study_uid, s.modality, s.protocol_name, java_timestamp(s.series_date),
        s.description, s.body_part, s.series_number, s.annotations_flag, s.collection,
        s.patient_id, s.manufacturer, s.model_name, s.software_versions,
        len(corpus.images_of(s.series_uid)), java_timestamp(s.date_released),
    )  # fmt: skip


@endpoint("getContentsByName", ("v1", "v2"), auth="swallow")
def get_contents_by_name(ctx: Backend, req: Request) -> Response:
    """A cart's visible series in the caller's collections; always JSON, DB order."""
    name = req.get("name")
    if name is None:
        # v2 carries a copy-paste slip in its message (supplement §1.4).
        missing = "name" if req.family == "v1" else "SeriesInstanceUID"
        return bad_request(f"A parameter, {missing} is required for this API call.")
    cart = find_cart(ctx.corpus, name)
    if cart is None:
        return Response(200)
    wanted = set(cart.series_uids)
    rows = [
        _contents_row(ctx.corpus, s)
        for s in ctx.corpus.series
        if s.series_uid in wanted and s.visibility == "1" and s.collection in req.sites
    ]
    if not rows:
        return Response(200)
    return Response(200, json_array(CONTENTS_COLUMNS, rows), "application/json")


def _series_dto(corpus: Corpus, s: Series) -> dict[str, object]:
    images = corpus.images_of(s.series_uid)
    size = sum(i.size for i in images)
    study = corpus.study(s.study_uid)
    return {
        "seriesPkId": corpus.pk(s.series_uid),
        "seriesId": s.series_uid,
        "seriesUID": s.series_uid,
        "studyId": s.study_uid,
        "studyPkId": corpus.pk(s.study_uid),
        "patientId": s.patient_id,
        "project": s.collection,
        "numberImages": len(images),
        "totalSizeForAllImagesInSeries": size,
        "exactSize": size,
        "modality": s.modality,
        "manufacturer": s.manufacturer,
        "seriesNumber": None if s.series_number is None else str(s.series_number),
        "description": s.description,
        "bodyPartExamined": s.body_part,
        "thirdPartyAnalysis": s.third_party,
        "descriptionURI": s.doi,
        "studyDateString": (mdy(study.study_date) if study else None) or "",
        "seriesDateString": mdy(s.series_date) or "",
    }


@endpoint("getStudyDrillDown", ("adv", "v4"), method="POST", allowed=("list",), param_kind="form")
@endpoint("getCartData", ("adv", "v4"), method="POST", allowed=("list",), param_kind="form")
def get_cart_data(ctx: Backend, req: Request) -> Response:
    """Studies (with full series beans) of ``general_series_pk_id`` values; visibility only.

    ``getStudyDrillDown`` writes the same ``StudyDTO`` list (``JSONUtil#getJSONforStudies``) from
    ``StudyDAOImpl#findStudiesBySeriesId_v4``, which has the same visibility-only filter.
    """
    try:
        pks = {int(v) for v in req.all("list")}
    except ValueError:
        return server_error()  # NumberFormatException
    corpus = ctx.corpus
    studies: dict[str, list[Series]] = {}
    for s in corpus.series:
        if s.visibility == "1" and corpus.pk(s.series_uid) in pks:
            studies.setdefault(s.study_uid, []).append(s)
    out = []
    for uid, members in studies.items():
        study = corpus.study(uid)
        out.append(
            {
                "studyId": uid,
                "date": mdy(study.study_date) if study else None,
                "description": study.description if study else None,
                "id": corpus.pk(uid),
                "study_id": study.study_id if study else None,
                "excludeCommercial": None,
                "seriesList": [_series_dto(corpus, s) for s in members],
            }
        )
    out.sort(key=lambda item: (str(item["date"]), str(item["studyId"])))
    return Response(200, json_body(out), "application/json")

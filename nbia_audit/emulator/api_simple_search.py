"""Simple search (criteria form, paged by patient) and text search (supplement §2, §3).

Results are cached per user and criteria like ``SearchUtil`` does (see ``search_cache``): a
repeated search returns what the first one found until the entry expires.

Criteria are read from ``criteriaType0`` upwards until the first gap; values of one type are
OR-ed, types are AND-ed. Implemented types: Collection, Species, ImageModality,
AnatomicalSite/BodyPartExamined, Manufacturer, Model, SoftwareVersion, Patient, Study,
Series, PatientSex, Phantom, ThirdPartyAnalysis, Description, DateRange (on ``date_released``)
and ModalityAndedSearch; the remaining documented types are parsed (so a missing companion
field still fails like the server) but do not filter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from nbia_audit.emulator import queries as q
from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.model import Series
from nbia_audit.emulator.routes import Request, endpoint
from nbia_audit.emulator.wire import MANIFEST_TYPE, Response, json_body, manifest, server_error

Getter = Callable[[Corpus, Series], str | None]


def _patient_attr(name: str) -> Getter:
    def get(corpus: Corpus, s: Series) -> str | None:
        patient = corpus.patient(s.collection, s.patient_id)
        value = getattr(patient, name) if patient else None
        return None if value is None else str(value)

    return get


_TEXT_CRITERIA: dict[str, Getter] = {
    "collectioncriteria": lambda c, s: s.collection,
    "speciescriteria": _patient_attr("species_code"),
    "imagemodalitycriteria": lambda c, s: s.modality,
    "anatomicalsitecriteria": lambda c, s: s.body_part,
    "bodypartexaminedcriteria": lambda c, s: s.body_part,
    "manufacturercriteria": lambda c, s: s.manufacturer,
    "modelcriteria": lambda c, s: s.model_name,
    "softwareversioncriteria": lambda c, s: s.software_versions,
    "patientcriteria": lambda c, s: s.patient_id,
    "studycriteria": lambda c, s: s.study_uid,
    "seriescriteria": lambda c, s: s.series_uid,
    "patientsexcriteria": _patient_attr("sex"),
    "phantomcriteria": _patient_attr("phantom"),
    "thirdpartyanalysis": lambda c, s: s.third_party or "NO",
}
_IGNORED_VALUE_CRITERIA = {
    "excludecommercialcriteria",
    "minnumberofstudiescriteria",
    "minnumberofstudydatescriteria",
}
_RANGE_CRITERIA = {
    "patientagerangecriteria",
    "pixelspacingrangecriteria",
    "slicethicknessrangecriteria",
}


class _FormError(Exception):
    """The server would throw while parsing the form (a 500)."""


class Criteria:
    """Parsed simple-search criteria: a series predicate plus patient-level conditions."""

    def __init__(self, req: Request, *, v4: bool) -> None:
        self.values: dict[str, set[str]] = {}
        self.descriptions: list[str] = []
        self.date_ranges: list[tuple[date, date]] = []
        self.all_modalities = False
        i = 0
        while (kind := req.get(f"criteriaType{i}")) is not None:
            self._parse(req, kind.lower(), i, v4)
            i += 1

    def _parse(self, req: Request, kind: str, i: int, v4: bool) -> None:
        if kind == "daterangecriteria":
            fmt = "%m-%d-%Y" if v4 else "%d/%m/%Y"
            start = q.parse_date(req.get(f"fromDate{i}"), fmt)
            end = q.parse_date(req.get(f"toDate{i}"), fmt)
            if start is None or end is None:
                raise _FormError(kind)
            self.date_ranges.append((start, end))
        elif kind in _RANGE_CRITERIA:
            if req.get(f"from{i}") is None or req.get(f"to{i}") is None:
                raise _FormError(kind)
        elif kind == "timepointcriteria":
            if req.get(f"eventType{i}") is None:
                raise _FormError(kind)
        elif (
            kind in _TEXT_CRITERIA
            or kind in _IGNORED_VALUE_CRITERIA
            or kind
            in (
                "descriptioncriteria",
                "modalityandedsearchcriteria",
            )
        ):
            value = req.get(f"value{i}")
            if value is None:
                raise _FormError(kind)
            if kind == "descriptioncriteria":
                self.descriptions.append(value.lower())
            elif kind == "modalityandedsearchcriteria":
                self.all_modalities = value.lower() == "all"
            elif kind in _TEXT_CRITERIA:
                self.values.setdefault(kind, set()).add(value.upper())
        # Unknown types are skipped silently, as the server does.

    def matches(self, corpus: Corpus, s: Series) -> bool:
        """Whether one series passes every series-level criterion."""
        for kind, wanted in self.values.items():
            if kind == "imagemodalitycriteria" and self.all_modalities:
                continue  # checked per patient
            value = _TEXT_CRITERIA[kind](corpus, s)
            if value is None or value.upper() not in wanted:
                return False
        text = " ".join(filter(None, (s.description, s.protocol_name))).lower()
        if any(d not in text for d in self.descriptions):
            return False
        day = s.date_released.date()
        return all(start <= day <= end for start, end in self.date_ranges)

    def patient_ok(self, series: list[Series]) -> bool:
        """ModalityAndedSearch: the patient must have every requested modality."""
        wanted = self.values.get("imagemodalitycriteria")
        if not (self.all_modalities and wanted):
            return True
        return wanted <= {s.modality.upper() for s in series}


_PAGING = frozenset({"sortField", "sortDirection", "start", "size"})


def _cache_key(req: Request, *, v4: bool) -> tuple[object, ...]:
    """``SearchUtil``'s queryKey: the user, every criterion field, and whether it is v4.

    Paging and sorting are not part of it: they are applied to the cached result each time.
    """
    fields = tuple(
        sorted((name, tuple(values)) for name, values in req.params.items() if name not in _PAGING)
    )
    return (req.user, v4, fields)


def _search(ctx: Backend, req: Request, *, v4: bool) -> tuple[list[list[Series]], int, str]:
    """Matching series grouped by patient, the page of patients, total count and sort label.

    Raises:
        _FormError: a missing or malformed required field (the server's NPE/parse errors).
    """
    paging = [req.get(k) for k in ("sortField", "sortDirection", "start", "size")]
    if any(v is None for v in paging):
        raise _FormError("paging")
    sort_field, direction = str(paging[0]), str(paging[1])
    try:
        start, size = int(str(paging[2])), int(str(paging[3]))
    except ValueError as exc:
        raise _FormError("paging") from exc
    criteria = Criteria(req, v4=v4)
    cache_key = _cache_key(req, v4=v4)
    cached = ctx.search_cache.get(cache_key)
    if cached is None:
        by_patient: dict[tuple[str, str], list[Series]] = {}
        for s in q.visible(ctx.corpus, req.sites):
            if criteria.matches(ctx.corpus, s):
                by_patient.setdefault((s.collection, s.patient_id), []).append(s)
        cached = [g for g in by_patient.values() if criteria.patient_ok(g)]
        ctx.search_cache.put(cache_key, cached)
    groups = list(cached)
    key = (lambda g: g[0].collection) if sort_field.lower() in ("project", "collection") else None
    groups.sort(key=key or (lambda g: g[0].patient_id), reverse=direction.lower() == "descending")
    if start > len(groups):
        raise _FormError("start")  # a negative subList
    return groups[start : start + size], len(groups), f"{sort_field}-{direction}"


def _manifest(ctx: Backend, req: Request, *, v4: bool) -> Response:
    try:
        page, _, _ = _search(ctx, req, v4=v4)
    except _FormError:
        return server_error()
    uids = [s.series_uid for group in page for s in group]
    basket = f"manifest-{int(time.time() * 1000)}.tcia"
    return Response(200, manifest(uids, "false", basket, ctx.download_server_url), MANIFEST_TYPE)


@endpoint(
    "getManifestForSimpleSearch", ("adv", "v4"), method="POST", param_kind="form", form_entity=True
)
def get_manifest_for_simple_search(ctx: Backend, req: Request) -> Response:
    """A manifest of the matching series of one page of patients (``includeAnnotation=false``)."""
    return _manifest(ctx, req, v4=req.family == "v4")


def _counts(values: list[str | None]) -> list[dict[str, object]]:
    tally: dict[str, int] = {}
    for v in values:
        if v is not None:
            tally[v] = tally.get(v, 0) + 1
    return [{"value": v, "count": n} for v, n in sorted(tally.items())]


def _patient_item(corpus: Corpus, group: list[Series]) -> dict[str, object]:
    first = group[0]
    studies: dict[str, list[Series]] = {}
    for s in group:
        studies.setdefault(s.study_uid, []).append(s)
    species = _patient_attr("species_code")(corpus, first)
    return {
        "subjectId": first.patient_id,
        "project": first.collection,
        "id": corpus.pk(f"{first.collection}//{first.patient_id}"),
        "modalities": sorted({s.modality for s in group}),
        "bodyParts": sorted({s.body_part for s in group if s.body_part}),
        "species": [species] if species else [],
        "timepoints": {},
        "totalNumberOfStudies": len(studies),
        "totalNumberOfSeries": len(group),
        "authorized": 1,
        "studyIdentifiers": [
            {
                "seriesIdentifiers": [corpus.pk(s.series_uid) for s in members],
                "seriesAndModality": [
                    {"seriesId": corpus.pk(s.series_uid), "modality": s.modality} for s in members
                ],
                "studyIdentifier": corpus.pk(uid),
            }
            for uid, members in studies.items()
        ],
    }


@endpoint("getSimpleSearch", ("v4",), method="POST", param_kind="form", form_entity=True)
def get_simple_search(ctx: Backend, req: Request) -> Response:
    """The ``PatientSearchSummary`` JSON (Jackson, NON_NULL) of one page of patients."""
    return _summary(ctx, req, v4=True)


@endpoint(
    "getSimpleSearchWithModalityAndBodyPartPaged",
    ("adv",),
    method="POST",
    param_kind="form",
    form_entity=True,
)
def get_simple_search_paged(ctx: Backend, req: Request) -> Response:
    """The unversioned twin of ``v4/getSimpleSearch`` (``SearchUtil#getPatients``: its own
    cache keys, ``dd/MM/yyyy`` date ranges)."""
    return _summary(ctx, req, v4=False)


def _summary(ctx: Backend, req: Request, *, v4: bool) -> Response:
    try:
        page, total, sort = _search(ctx, req, v4=v4)
    except _FormError:
        return server_error()
    everything = [s for group in page for s in group]
    patients = [group[0] for group in page]
    body = {
        "resultSet": [_patient_item(ctx.corpus, group) for group in page],
        "totalPatients": total,
        "bodyParts": _counts([s.body_part for s in everything]),
        "modalities": _counts([s.modality for s in everything]),
        "collections": _counts([s.collection for s in patients]),
        "species": _counts([_patient_attr("species_code")(ctx.corpus, s) for s in patients]),
        "sort": sort,
    }
    return Response(200, json_body(body), "application/json")


@endpoint(
    "getRestrictionsForSimpleSearch",
    ("adv", "v4"),
    method="POST",
    param_kind="form",
    form_entity=True,
)
def get_restrictions_for_simple_search(ctx: Backend, req: Request) -> Response:
    """``yes`` if a series of the page found carries a non-commercial license, else ``no``.

    The two answers are labelled differently, as in the resource (``application/text`` and
    ``application/x-nbia-manifest-file``). The restriction is read from the series' license's
    commercial-use flag (inference: ``SeriesDTO#isCommercialRestrictions``).
    """
    try:
        page, _, _ = _search(ctx, req, v4=True)
    except _FormError:
        return server_error()
    for group in page:
        for s in group:
            lic = ctx.corpus.license_by_long_name(s.license_name)
            if lic is not None and lic.commercial_use.upper() == "NO":
                return Response(200, b"yes", "application/text")
    return Response(200, b"no", MANIFEST_TYPE)


def _study_description(corpus: Corpus, s: Series) -> str | None:
    study = corpus.study(s.study_uid)
    return study.description if study else None


_TEXT_FIELDS: tuple[Getter, ...] = (
    lambda c, s: s.collection,
    lambda c, s: s.patient_id,
    lambda c, s: s.study_uid,
    lambda c, s: s.series_uid,
    lambda c, s: s.modality,
    lambda c, s: s.description,
    lambda c, s: s.protocol_name,
    lambda c, s: s.body_part,
    lambda c, s: s.manufacturer,
    lambda c, s: s.model_name,
    lambda c, s: s.software_versions,
    lambda c, s: _study_description(c, s),
)
_FIELDED: dict[str, Getter] = {
    "collection": lambda c, s: s.collection,
    "patientid": lambda c, s: s.patient_id,
    "modality": lambda c, s: s.modality,
    "bodypartexamined": lambda c, s: s.body_part,
    "manufacturer": lambda c, s: s.manufacturer,
    "seriesdesc": lambda c, s: s.description,
    "studydesc": lambda c, s: _study_description(c, s),
}
MAX_TEXT_PATIENTS = 1000  # Solr grouping with rows=1000


def text_search_patients(ctx: Backend, text: str, sites: frozenset[str]) -> list[str]:
    """PatientIDs whose indexed documents contain the term (``field:value`` or a plain term)."""
    term = text.strip()
    if len(term) < 2:
        return []
    field, sep, value = term.partition(":")
    getters: tuple[Getter, ...]
    if sep and field.lower() in _FIELDED:
        getters, needle = (_FIELDED[field.lower()],), value.lower()
    elif sep:
        return []  # a field the index does not know finds nothing
    else:
        getters, needle = _TEXT_FIELDS, term.lower()
    hits: list[str] = []
    for s in q.visible(ctx.corpus, sites):
        words = " ".join(filter(None, (g(ctx.corpus, s) for g in getters))).lower()
        if needle in words and s.patient_id not in hits:
            hits.append(s.patient_id)
    return hits[:MAX_TEXT_PATIENTS]


@endpoint("getManifestForTextSearch", ("adv",), method="POST", param_kind="form")
def get_manifest_for_text_search(ctx: Backend, req: Request) -> Response:
    """Every visible series of every patient matching the text (IDs not collection-scoped)."""
    patients = set(text_search_patients(ctx, req.get("textValue") or "", req.sites))
    uids = [s.series_uid for s in q.visible(ctx.corpus, req.sites) if s.patient_id in patients]
    basket = f"manifest-{int(time.time() * 1000)}.tcia"
    return Response(200, manifest(uids, "false", basket, ctx.download_server_url), MANIFEST_TYPE)

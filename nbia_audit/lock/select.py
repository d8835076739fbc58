"""Turn a spec's selectors into the set of series they select, with each series' metadata.

This is the first half of resolution: which series, described how. Every source goes
through the endpoint that answers it most cheaply: one ``getSeries`` per collection or
study, batched ``getSeriesMetadata`` for explicit UIDs, the manifest endpoints for searches
(protocol §5, §6). Problems a user can fix in the spec (an unknown collection, a selector
that selects nothing, a UID the archive does not know) are ``SpecError`` with the
selector's line, raised before anything is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nbia_audit.archive.calls import CallRunner
from nbia_audit.archive.protocol import Archive
from nbia_audit.client.records import SeriesInfo
from nbia_audit.errors import SpecError
from nbia_audit.lock.changes import SeriesMeta
from nbia_audit.manifest import read_manifest
from nbia_audit.spec.filters import filters_series, passes_filters
from nbia_audit.spec.load import DatasetSpec, Selector

__all__ = ["Selection", "select_series"]

# Above this many patients, one getSeries for the whole collection is cheaper than one per
# patient.
PER_PATIENT_LIMIT = 20

# The portal's simple-search criteria types for our spec keys
# (docs/nbia-protocol-supplement.md §2.2).
SEARCH_CRITERIA = {
    "collection": "CollectionCriteria",
    "modality": "ImageModalityCriteria",
    "body_part": "AnatomicalSiteCriteria",
    "manufacturer": "ManufacturerCriteria",
    "model": "ModelCriteria",
    "software_version": "SoftwareVersionCriteria",
    "species": "SpeciesCriteria",
    "patient_sex": "PatientSexCriteria",
    "phantom": "PhantomCriteria",
    "third_party": "ThirdPartyAnalysis",
    "description": "DescriptionCriteria",
    "patients": "PatientCriteria",
    "studies": "StudyCriteria",
    "series": "SeriesCriteria",
}


@dataclass(frozen=True, slots=True)
class Selection:
    """The series a spec selects, by UID, and which whole collections it covers."""

    series: dict[str, SeriesInfo]
    whole_collections: frozenset[str]  # selected without filters and with nothing excluded
    # Studies and (collection, patient) pairs the spec selects whole by construction: every
    # visible series of them, nothing filtered or excluded.
    whole_studies: frozenset[str]
    whole_patients: frozenset[tuple[str, str]]


def select_series(
    spec: DatasetSpec,
    archive: Archive,
    *,
    workers: int = 8,
    strict: bool = True,
    lists_may_shrink: bool = False,
) -> Selection:
    """Resolve ``spec.select`` minus ``spec.exclude`` into series with their metadata.

    ``strict=False`` (for checking an existing lock) tolerates explicit UIDs the archive no
    longer serves and selectors that now select nothing: they are simply absent from the
    result, where a comparison with the lock reports them. ``lists_may_shrink`` (drift, which
    reports such series itself) keeps every other strict check but lets a manifest, DOI or
    cart name UIDs the archive does not serve.

    Raises:
        SpecError: a selector names an unknown collection or UID, or selects nothing.
        ApiError: the archive could not answer.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        runner = CallRunner(pool)
        known = archive.collections()
        for selector in (*spec.select, *spec.exclude):
            _check_collections(spec, selector, known)
        naming = {"series"} if lists_may_shrink else set(_NAMING_KINDS)
        chosen = _resolve_all(spec, spec.select, archive, runner, strict, naming)
        excluded = _resolve_all(spec, spec.exclude, archive, runner, False, naming)
    selected: dict[str, SeriesInfo] = {}
    for found in chosen:
        selected.update(found)
    for found in excluded:
        for uid in found:
            selected.pop(uid, None)
    if not selected and strict:
        raise SpecError(
            "the selection is empty once `exclude` is applied",
            path=spec.path,
            line=spec.exclude[0].line if spec.exclude else None,
            key="exclude",
            hint="remove or narrow the exclude selectors",
        )
    whole = frozenset(
        s.collection
        for s in spec.select
        if s.kind == "collection"
        and s.collection
        and s.normalised().keys() == {"kind", "collection"}
    )
    whole = frozenset(
        c for c in whole if not any(info.collection == c for f in excluded for info in f.values())
    )
    studies, patients = _whole_nodes(spec.select, chosen, excluded)
    return Selection(
        series=selected,
        whole_collections=whole,
        whole_studies=studies,
        whole_patients=patients,
    )


def _whole_nodes(
    selectors: Sequence[Selector],
    chosen: Sequence[dict[str, SeriesInfo]],
    excluded: Sequence[dict[str, SeriesInfo]],
) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """Studies and patients selected whole: by a collection (optionally narrowed to named
    patients) or by study UIDs, with no filter and nothing of theirs excluded."""
    studies: set[str] = set()
    patients: set[tuple[str, str]] = set()
    for selector, found in zip(selectors, chosen, strict=True):
        if filters_series(selector) or selector.kind not in ("collection", "studies"):
            continue
        studies |= {info.study_uid or "" for info in found.values()}
        if selector.kind == "collection":
            patients |= {(info.collection or "", info.patient_id or "") for info in found.values()}
    gone = [info for f in excluded for info in f.values()]
    studies -= {info.study_uid or "" for info in gone}
    patients -= {(info.collection or "", info.patient_id or "") for info in gone}
    return frozenset(studies), frozenset(patients)


def _check_collections(spec: DatasetSpec, selector: Selector, known: Sequence[str]) -> None:
    names = [selector.collection] if selector.collection else []
    names += list(selector.search.get("collection", ()))
    lowered = {k.lower(): k for k in known}
    for name in names:
        if name in known:
            continue
        # Collection names are matched case-insensitively for the suggestion only: NBIA
        # itself compares them exactly.
        matches = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        close = lowered[matches[0]] if matches else None
        raise SpecError(
            f"the archive has no collection {name!r}",
            path=spec.path,
            line=selector.line,
            key=f"{selector.where}.collection" if selector.collection == name else selector.where,
            hint=f"did you mean `{close}`?" if close else "run against the right server?",
        )


def _resolve_all(
    spec: DatasetSpec,
    selectors: Sequence[Selector],
    archive: Archive,
    runner: CallRunner,
    required: bool,
    naming: set[str],
) -> list[dict[str, SeriesInfo]]:
    results = []
    for selector in selectors:
        found = _resolve_one(spec, selector, archive, runner, required, naming)
        kept = {
            uid: info
            for uid, info in found.items()
            if passes_filters(selector, SeriesMeta.from_info(info))
        }
        if required and not kept:
            raise SpecError(
                "selects no series",
                path=spec.path,
                line=selector.line,
                key=selector.where,
                hint="check the filters, or remove the selector",
            )
        results.append(kept)
    return results


def _resolve_one(
    spec: DatasetSpec,
    selector: Selector,
    archive: Archive,
    runner: CallRunner,
    strict: bool,
    naming: set[str],
) -> dict[str, SeriesInfo]:
    if selector.kind == "collection":
        assert selector.collection is not None
        collection = selector.collection
        if selector.patients and len(selector.patients) <= PER_PATIENT_LIMIT:
            calls = [
                partial(archive.series, collection=collection, patient_id=p)
                for p in selector.patients
            ]
        else:
            calls = [partial(archive.series, collection=collection)]
        return _by_uid(_flatten(runner.run("selection", calls)))
    if selector.kind == "studies":
        calls = [partial(archive.series, study_uid=s) for s in selector.studies]
        found = _by_uid(_flatten(runner.run("selection", calls)))
        seen = {info.study_uid for info in found.values()}
        if strict:
            missing_studies = [s for s in selector.studies if s not in seen]
            _require_known(spec, selector, "studies", missing_studies)
        return found
    uids = _source_uids(selector, archive)
    found = _metadata(uids, archive, runner)
    if selector.kind in naming and strict:
        # A UID the spec's source names (directly, in a manifest, a cart or a DOI) that the
        # archive does not serve is never dropped silently: the lock would pin less than
        # the source says. One the spec itself excludes by UID is not needed.
        excluded = _explicitly_excluded(spec)
        missing = [u for u in sorted(set(uids)) if u not in found and u not in excluded]
        _require_known(spec, selector, _NAMING_KINDS[selector.kind], missing)
    return found


# Selectors whose source is a list of UIDs, and the spec key that holds the source.
_NAMING_KINDS = {"series": "series", "manifest": "manifest", "doi": "doi", "cart": "cart"}


def _explicitly_excluded(spec: DatasetSpec) -> frozenset[str]:
    return frozenset(
        uid for s in spec.exclude if s.kind in ("series", "manifest") for uid in s.series
    )


def _source_uids(selector: Selector, archive: Archive) -> list[str]:
    if selector.kind in ("series", "manifest"):
        return list(selector.series)
    if selector.kind == "doi":
        assert selector.doi is not None
        return archive.series_for_doi(selector.doi)
    if selector.kind == "cart":
        assert selector.cart is not None
        return archive.cart_series(selector.cart)
    if selector.kind == "search":
        criteria = [
            (SEARCH_CRITERIA[key], value)
            for key, values in sorted(selector.search.items())
            for value in values
        ]
        if selector.collection and "collection" not in selector.search:
            criteria.insert(0, (SEARCH_CRITERIA["collection"], selector.collection))
        return archive.simple_search_series(criteria)
    if selector.kind == "text":
        assert selector.text is not None
        return archive.text_search_series(selector.text)
    raise AssertionError(f"unknown selector kind {selector.kind}")


METADATA_BATCH = 500


def _metadata(uids: Sequence[str], archive: Archive, runner: CallRunner) -> dict[str, SeriesInfo]:
    unique = sorted(set(uids))
    batches = [unique[i : i + METADATA_BATCH] for i in range(0, len(unique), METADATA_BATCH)]
    calls = [partial(archive.series_metadata, b) for b in batches]
    # getSeriesMetadata lists only visible series; a UID a manifest or DOI names but the
    # archive no longer serves simply does not come back (drift reports it as hidden).
    return _by_uid(_flatten(runner.run("selection", calls)))


def _require_known(spec: DatasetSpec, selector: Selector, key: str, missing: list[str]) -> None:
    if not missing:
        return
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    names = {
        "manifest": f"the manifest {_manifest_place(spec, selector, missing[0])} names ",
        "doi": f"DOI {selector.doi} lists ",
        "cart": f"cart {selector.cart} lists ",
    }.get(key, "")
    hint = "check the UID, the server, or whether the series was withdrawn"
    if key in ("manifest", "doi", "cart"):
        hint += "; to lock without it, add it to `exclude: - series: [...]`"
    message = f"the archive does not serve {missing[0]}{more}"
    if names:
        message = f"{names}{missing[0]}{more}, which the archive does not serve"
    raise SpecError(
        message,
        path=spec.path,
        line=selector.line,
        key=f"{selector.where}.{key}",
        hint=hint,
    )


def _manifest_place(spec: DatasetSpec, selector: Selector, uid: str) -> str:
    """``file:line`` of the manifest line that names ``uid`` (the file name alone when the
    manifest can no longer be read: a spec embedded in a lock keeps only the UIDs)."""
    name = selector.manifest or "?"
    if selector.manifest is None:
        return name
    try:
        line = read_manifest(Path(spec.path).parent / selector.manifest).line_of(uid)
    except SpecError:
        return name
    return f"{name}:{line}" if line is not None else name


def _flatten(groups: Iterable[list[SeriesInfo]]) -> list[SeriesInfo]:
    return [info for group in groups for info in group]


def _by_uid(infos: Iterable[SeriesInfo]) -> dict[str, SeriesInfo]:
    return {info.series_uid: info for info in infos}


def describe(selection: Selection) -> str:
    """One line for a progress report."""
    collections = sorted({i.collection or "?" for i in selection.series.values()})
    return f"{len(selection.series)} series in {len(collections)} collection(s)"

"""What the lock's spec resolves to *now*, tolerating everything upstream drift can do to it.

``lock`` refuses a spec that names a series the archive no longer serves or selects nothing:
right for writing a lock, wrong for drift, where exactly that is the finding. This module
re-runs :func:`nbia_audit.lock.select.select_series` on the spec embedded in the lock and, when
it raises a :class:`SpecError` about one selector, relaxes that selector (the error's ``key``
names it) and asks again, so the answer is the series the spec still reaches.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from nbia_audit.archive.protocol import Archive
from nbia_audit.client.records import SeriesInfo
from nbia_audit.drift.diff import EXTERNAL_SELECTOR_KINDS, Reach, SeriesMeta
from nbia_audit.errors import SpecError
from nbia_audit.lock.select import select_series
from nbia_audit.spec.filters import passes_filters
from nbia_audit.spec.load import DatasetSpec, Selector

__all__ = ["CurrentSelection", "reach_of", "resolve"]

_KEY = re.compile(r"^(select|exclude)(?:\[(\d+)\])?(?:\.(\w+))?")


@dataclass(frozen=True, slots=True)
class CurrentSelection:
    """The series the spec resolves to now, and how that was found out."""

    series: dict[str, SeriesInfo]
    relaxed: tuple[str, ...]  # what had to be relaxed, for the report


def prepare(spec: DatasetSpec) -> DatasetSpec:
    """Split study lists into one selector per study (same union, same requests), so one
    study that is gone relaxes only itself; UID lists without a collection constraint become
    manifest-like lists, which tolerate UIDs the archive no longer serves."""
    select = [part for s in spec.select for part in _split(s)]
    exclude = [part for s in spec.exclude for part in _split(s)]
    return _renumbered(spec, select, exclude)


def _split(selector: Selector) -> list[Selector]:
    if selector.kind == "studies" and len(selector.studies) > 1:
        return [dataclasses.replace(selector, studies=(uid,)) for uid in selector.studies]
    if selector.kind == "series" and selector.collection is None:
        return [dataclasses.replace(selector, kind="manifest")]
    return [selector]


def _renumbered(
    spec: DatasetSpec, select: Sequence[Selector], exclude: Sequence[Selector]
) -> DatasetSpec:
    return dataclasses.replace(
        spec,
        select=tuple(dataclasses.replace(s, where=f"select[{i}]") for i, s in enumerate(select)),
        exclude=tuple(dataclasses.replace(s, where=f"exclude[{i}]") for i, s in enumerate(exclude)),
    )


def resolve(spec: DatasetSpec, archive: Archive, *, workers: int = 8) -> CurrentSelection:
    """Resolve ``spec`` as the archive serves it now; never fails because of drift.

    Raises:
        ApiError: the archive could not answer (nothing can be concluded then).
        SpecError: the embedded spec itself is unusable (not a drift matter).
    """
    current = prepare(spec)
    relaxed: list[str] = []
    # Each round relaxes one selector, so this ends after at most one round per selector.
    for _ in range(len(current.select) + len(current.exclude) + 2):
        if not current.select:
            return CurrentSelection({}, tuple(relaxed))
        try:
            selection = select_series(current, archive, workers=workers, lists_may_shrink=True)
        except SpecError as error:
            relaxed_spec = _relax(current, error, relaxed)
            if relaxed_spec is None:
                return CurrentSelection({}, tuple(relaxed))
            current = relaxed_spec
            continue
        return CurrentSelection(selection.series, tuple(relaxed))
    raise SpecError("the spec could not be resolved", path=spec.path)  # pragma: no cover


def _relax(spec: DatasetSpec, error: SpecError, relaxed: list[str]) -> DatasetSpec | None:
    """Relax the selector ``error`` is about; None when the selection is simply empty now.

    Raises:
        SpecError: ``error`` is not about one selector (re-raised).
    """
    match = _KEY.match(error.key or "")
    if match is None:
        raise error
    part, index, sub = match.group(1), match.group(2), match.group(3)
    if index is None:
        relaxed.append(error.message)
        return None  # "the selection is empty once `exclude` is applied"
    where = int(index)
    select, exclude = list(spec.select), list(spec.exclude)
    group = select if part == "select" else exclude
    selector = group[where]
    relaxed.append(f"{_describe(selector)}: {error.message}")
    if sub == "series":
        # Some listed UIDs are no longer served: keep the rest, as a manifest list would.
        group[where] = dataclasses.replace(selector, kind="manifest")
    else:
        del group[where]  # it selects (or excludes) nothing now
    return _renumbered(spec, select, exclude)


def _describe(selector: Selector) -> str:
    if selector.kind == "studies":
        return f"study {', '.join(selector.studies)}"
    if selector.kind in ("series", "manifest"):
        return f"{selector.kind} list of {len(selector.series)} series"
    value = selector.collection or selector.doi or selector.cart or selector.text or ""
    return f"{selector.kind} {value}".strip()


def reach_of(spec: DatasetSpec, series_uid: str, meta: SeriesMeta) -> Reach:
    """Which of ``spec``'s selectors could select or exclude one series, judged by its fields.

    Decides, per series, whether its absence from a listing can be believed
    (:func:`nbia_audit.drift.diff.deselection_explained`): one cart or search selector
    elsewhere in the spec says nothing about a series only a collection selector reaches.
    The selectors are the spec's own (not :func:`prepare`'s split), matched as
    :func:`nbia_audit.lock.select.select_series` matches what the archive lists.
    """
    selecting = [s for s in spec.select if _could_match(s, series_uid, meta)]
    return Reach(
        by_fields=any(s.kind not in EXTERNAL_SELECTOR_KINDS for s in selecting),
        external=any(s.kind in EXTERNAL_SELECTOR_KINDS for s in selecting),
        excluded=any(_could_match(s, series_uid, meta) for s in spec.exclude),
    )


def _could_match(selector: Selector, series_uid: str, meta: SeriesMeta) -> bool:
    return _in_source(selector, series_uid, meta) and passes_filters(selector, meta)


def _in_source(selector: Selector, series_uid: str, meta: SeriesMeta) -> bool:
    if selector.kind == "collection":
        return meta.collection == selector.collection
    if selector.kind == "studies":
        return meta.study_uid in selector.studies
    if selector.kind in ("series", "manifest"):
        return series_uid in selector.series
    if selector.kind == "doi":
        # NBIA matches the DOI against the series' DataDescriptionURI exactly (protocol §7).
        return meta.doi == selector.doi
    return True  # cart, search, text: only the archive knows what they answer

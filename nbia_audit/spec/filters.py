"""Whether a series passes a selector's filters: the one predicate ``lock`` and ``drift`` use.

The series is judged by its fields as the lock records them (text, ``""`` for a value the
archive did not give, the release date as ``YYYY-MM-DD``), so a series the archive lists
and the same series read back from a lock are always judged alike.

A missing value never matches an explicit filter: NBIA selects by SQL equality, which a
NULL never satisfies, and a series the spec cannot be shown to ask for is not pinned.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from nbia_audit.spec.load import Selector

__all__ = ["FilterSubject", "filters_series", "passes_filters"]


class FilterSubject(Protocol):
    """The fields of a series the filters read."""

    @property
    def collection(self) -> str: ...

    @property
    def patient_id(self) -> str: ...

    @property
    def modality(self) -> str: ...

    @property
    def body_part(self) -> str: ...

    @property
    def manufacturer(self) -> str: ...

    @property
    def released(self) -> str: ...


def filters_series(selector: Selector) -> bool:
    """True when ``selector`` filters series by their own fields (modality, body part,
    manufacturer, release date), so it may take part of a study rather than all of it."""
    return any(
        (
            selector.modality,
            selector.body_part,
            selector.manufacturer,
            selector.released_after,
            selector.released_before,
        )
    )


def passes_filters(selector: Selector, series: FilterSubject) -> bool:
    """True when ``series`` passes every filter ``selector`` sets (not its source)."""
    # DICOM code strings (modality, body part) and manufacturers compare case-insensitively.
    checks = (
        (selector.modality, series.modality),
        (selector.body_part, series.body_part),
        (selector.manufacturer, series.manufacturer),
    )
    for wanted, actual in checks:
        if wanted and not _one_of(actual, wanted):
            return False
    if selector.patients and not _present(series.patient_id, selector.patients):
        return False
    # Beside explicit UIDs or a search, `collection` constrains what the source yields.
    in_other_collection = selector.collection and series.collection != selector.collection
    if selector.kind != "collection" and in_other_collection:
        return False
    released = _date(series.released)
    if selector.released_after and (released is None or released < selector.released_after):
        return False
    return not (
        selector.released_before and (released is None or released > selector.released_before)
    )


def _one_of(actual: str, wanted: tuple[str, ...]) -> bool:
    return bool(actual) and actual.upper() in {w.upper() for w in wanted}


def _present(actual: str, wanted: tuple[str, ...]) -> bool:
    # IDs compare exactly.
    return bool(actual) and actual in wanted


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None  # not an ISO date: no date filter can be said to pass

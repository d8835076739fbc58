"""Simple-search criteria and the form NBIA's simple-search endpoints expect.

The form (supplement §2.2) numbers criteria from 0 (``criteriaType0``/``value0``, …) and stops
at the first gap; the four paging fields are required or the server fails with 500. Results are
paged *by patient*, so a manifest needs ``start=0`` and a ``size`` larger than any patient count
(supplement §2.3). Date ranges filter the release date, written ``MM-dd-yyyy`` on v4 and
``dd/MM/yyyy`` on the unversioned endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

__all__ = ["SearchCriterion", "simple_search_form"]

_ALL_PATIENTS = "1000000"
"""Page size that takes every matching patient in one page (tcia_utils uses the same)."""


@dataclass(frozen=True, slots=True)
class SearchCriterion:
    """One simple-search criterion: a ``criteriaType`` with its value, or a release-date range.

    Build them with the class methods (``SearchCriterion.collection("4D-Lung")``) or directly
    with any type name the server knows (supplement §2.2), e.g.
    ``SearchCriterion("ManufacturerCriteria", "SIEMENS")``.
    """

    kind: str
    value: str | None = None
    released_from: date | None = None
    released_to: date | None = None

    @classmethod
    def collection(cls, name: str) -> SearchCriterion:
        """Series of the collection ``name``."""
        return cls("CollectionCriteria", name)

    @classmethod
    def modality(cls, modality: str) -> SearchCriterion:
        """Series of one modality, e.g. ``CT``."""
        return cls("ImageModalityCriteria", modality)

    @classmethod
    def body_part(cls, body_part: str) -> SearchCriterion:
        """Series of one examined body part."""
        return cls("AnatomicalSiteCriteria", body_part)

    @classmethod
    def patient(cls, patient_id: str) -> SearchCriterion:
        """Series of one PatientID."""
        return cls("PatientCriteria", patient_id)

    @classmethod
    def species(cls, snomed_code: str) -> SearchCriterion:
        """Series of one species, by SNOMED code (human: ``337915000``)."""
        return cls("SpeciesCriteria", snomed_code)

    @classmethod
    def released_between(cls, first: date, last: date) -> SearchCriterion:
        """Series released from ``first`` to ``last``, both days included."""
        return cls("DateRangeCriteria", released_from=first, released_to=last)


def simple_search_form(criteria: Sequence[SearchCriterion], *, v4: bool) -> dict[str, str]:
    """Build the form for ``getManifestForSimpleSearch`` (v4 or unversioned).

    Raises:
        ValueError: no criteria (the server would list the whole archive), a criterion without
            its value, or a date range missing an end.
    """
    if not criteria:
        raise ValueError("a simple search needs at least one criterion")
    form: dict[str, str] = {}
    for index, criterion in enumerate(criteria):
        form[f"criteriaType{index}"] = criterion.kind
        if criterion.kind == "DateRangeCriteria":
            first, last = criterion.released_from, criterion.released_to
            if first is None or last is None:
                raise ValueError("a DateRangeCriteria needs both released_from and released_to")
            form[f"fromDate{index}"] = _search_date(first, v4=v4)
            form[f"toDate{index}"] = _search_date(last, v4=v4)
        elif criterion.value is None:
            raise ValueError(f"the {criterion.kind} criterion needs a value")
        else:
            form[f"value{index}"] = criterion.value
    form.update(sortField="subject", sortDirection="ascending", start="0", size=_ALL_PATIENTS)
    return form


def _search_date(day: date, *, v4: bool) -> str:
    return day.strftime("%m-%d-%Y" if v4 else "%d/%m/%Y")

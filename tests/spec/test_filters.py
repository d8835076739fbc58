"""The one filter predicate that lock's selection and drift's reach both use."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from nbia_audit.drift.diff import Reach
from nbia_audit.drift.select import reach_of
from nbia_audit.lock.changes import SeriesMeta
from nbia_audit.spec.filters import filters_series, passes_filters
from nbia_audit.spec.load import Selector, parse_spec

LISTED = SeriesMeta(
    collection="C1",
    patient_id="P1",
    modality="CT",
    body_part="CHEST",
    manufacturer="Siemens",
    released="2016-05-04",
)


@pytest.mark.parametrize(
    ("selector", "passes"),
    [
        (Selector("collection", collection="C1"), True),
        (Selector("collection", collection="C1", modality=("ct",)), True),  # code strings: any case
        (Selector("collection", collection="C1", body_part=("chest", "HEAD")), True),
        (Selector("collection", collection="C1", manufacturer=("SIEMENS",)), True),
        (Selector("collection", collection="C1", modality=("MR",)), False),
        (Selector("collection", collection="C1", patients=("P1",)), True),
        (Selector("collection", collection="C1", patients=("p1",)), False),  # IDs: exactly
        (Selector("collection", collection="C1", released_after=dt.date(2016, 5, 4)), True),
        (Selector("collection", collection="C1", released_after=dt.date(2016, 5, 5)), False),
        (Selector("collection", collection="C1", released_before=dt.date(2016, 5, 3)), False),
        (Selector("search", collection="C1"), True),
        (Selector("search", collection="C2"), False),  # beside a search, collection filters
    ],
)
def test_filters_decide_on_the_series_fields(selector: Selector, passes: bool) -> None:
    assert passes_filters(selector, LISTED) is passes


@pytest.mark.parametrize(
    ("selector", "missing"),
    [
        (Selector("collection", collection="C1", modality=("CT",)), "modality"),
        (Selector("collection", collection="C1", body_part=("CHEST",)), "body_part"),
        (Selector("collection", collection="C1", manufacturer=("Siemens",)), "manufacturer"),
        (Selector("collection", collection="C1", patients=("P1",)), "patient_id"),
        (Selector("collection", collection="C1", released_after=dt.date(2000, 1, 1)), "released"),
        (Selector("collection", collection="C1", released_before=dt.date(2030, 1, 1)), "released"),
        (Selector("search", collection="C1"), "collection"),
    ],
)
def test_a_missing_value_never_matches_an_explicit_filter(selector: Selector, missing: str) -> None:
    assert passes_filters(selector, LISTED)
    assert not passes_filters(selector, dataclasses.replace(LISTED, **{missing: ""}))


@pytest.mark.parametrize("missing", ["modality", "body_part", "manufacturer", "patient_id"])
def test_a_blank_wanted_value_does_not_match_a_missing_one(missing: str) -> None:
    # The spec loader refuses a blank value; a spec built in code (or embedded in a lock
    # written by hand) may still hold one, and it must not select what has no value.
    key = "patients" if missing == "patient_id" else missing
    selector = dataclasses.replace(Selector("collection", collection="C1"), **{key: ("",)})
    assert not passes_filters(selector, dataclasses.replace(LISTED, **{missing: ""}))


def test_drift_reach_refuses_a_series_without_the_filtered_field() -> None:
    # Old drift_select._passes_filters matched a missing modality against an empty wanted
    # value (`"" in {""}`) where lock's selection refused it; both now use one predicate.
    spec = parse_spec(
        "name: n\nserver: https://example.org/nbia-api/services\nselect:\n  - collection: C1\n"
    )
    only_blank = dataclasses.replace(
        spec, select=(Selector("collection", collection="C1", modality=("",), where="select[0]"),)
    )
    assert reach_of(only_blank, "9", SeriesMeta(collection="C1")) == Reach()
    assert reach_of(spec, "9", SeriesMeta(collection="C1")) == Reach(by_fields=True)


def test_filters_series_names_the_filters_that_can_split_a_study() -> None:
    assert not filters_series(Selector("collection", collection="C1", patients=("P1",)))
    assert filters_series(Selector("collection", collection="C1", modality=("CT",)))
    assert filters_series(Selector("studies", released_before=dt.date(2020, 1, 1)))

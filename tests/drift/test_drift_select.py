"""Re-resolving the lock's own spec: rebuilt from the lock (not from files), and tolerant of
exactly the drift that `lock` would refuse (UIDs no longer served, selectors now empty)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.client.records import SeriesInfo
from nbia_audit.drift.diff import Reach, SeriesMeta
from nbia_audit.drift.run import check_drift, read_lock
from nbia_audit.drift.select import prepare, reach_of
from nbia_audit.emulator import Emulator
from nbia_audit.errors import SpecError
from nbia_audit.findings import AuditReport
from nbia_audit.spec.load import parse_spec, spec_from_normalised
from tests.support.drift import (
    PARTIAL,
    PARTIAL_PATIENT,
    WHOLE,
    Key,
    Place,
    assert_exactly,
    client_for,
    make_lock,
)

SPEC_WITH_EVERY_KIND = """
name: every-kind
description: all selector kinds
server: https://example.org/nbia-api/services
api: v4
select:
  - collection: C1
    patients: [P1, P2]
    modality: [CT]
    released_after: 2020-01-01
    released_before: 2021-12-31
  - studies: ["1.2.3", "1.2.4"]
  - series: ["1.2.5"]
    collection: C1
  - doi: 10.7937/K9/TCIA.2015.PF0M9REI
  - manifest: picked.tcia
  - cart: my-cart
  - search: {modality: [MR], body_part: [HEAD]}
  - text: lung
exclude:
  - series: ["1.2.9"]
options:
  include_annotations: true
"""

MANIFEST = "manifestVersion=3.0\nListOfSeriesToDownload=\n1.2.7\n1.2.8\n"


def test_a_spec_rebuilt_from_its_normalised_form_is_the_same_spec(tmp_path: Path) -> None:
    (tmp_path / "picked.tcia").write_text(MANIFEST, encoding="utf-8")
    spec = parse_spec(SPEC_WITH_EVERY_KIND, path="d.yaml", base_dir=tmp_path)
    (tmp_path / "picked.tcia").unlink()  # the lock embeds the manifest's UIDs
    rebuilt = spec_from_normalised(spec.normalised(), path="d.lock")
    assert rebuilt.normalised() == spec.normalised()
    assert rebuilt.digest() == spec.digest()
    assert rebuilt.select[4].series == ("1.2.7", "1.2.8")
    assert [s.where for s in rebuilt.exclude] == ["exclude[0]"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(format=99),
        lambda d: d["select"][0].update(kind="bogus"),
        lambda d: d["select"][0].update(unknown="x"),
        lambda d: d["select"][0].update(released_after="not a date"),
        lambda d: d.pop("select"),
    ],
)
def test_a_damaged_embedded_spec_is_a_spec_error_naming_the_lock(damage: object) -> None:
    data = parse_spec(SPEC_WITH_EVERY_KIND.replace("  - manifest: picked.tcia\n", "")).normalised()
    damage(data)  # type: ignore[operator]
    with pytest.raises(SpecError, match="d.lock"):
        spec_from_normalised(data, path="d.lock")


def test_prepare_splits_study_lists_and_relaxes_plain_uid_lists() -> None:
    spec = parse_spec(SPEC_WITH_EVERY_KIND.replace("  - manifest: picked.tcia\n", ""))
    prepared = prepare(spec)
    studies = [s for s in prepared.select if s.kind == "studies"]
    assert [s.studies for s in studies] == [("1.2.3",), ("1.2.4",)]
    constrained = [s for s in prepared.select if s.series == ("1.2.5",)]
    assert constrained[0].kind == "series"  # keeps its collection constraint
    assert prepared.exclude[0].kind == "manifest"
    assert [s.where for s in prepared.select] == [f"select[{i}]" for i in range(8)]


def lock_with(emu: Emulator, tmp_path: Path, select: str) -> Path:
    text = f"name: t\nserver: {emu.base_url}\nselect:\n{select}"
    return make_lock(emu, tmp_path, text=text)


def drift_of(emu: Emulator, lock: Path, *, fast: bool = False) -> AuditReport:
    with client_for(emu) as client:
        return check_drift(lock, ArchiveView(client), fast=fast)


def test_a_listed_series_that_is_gone_is_removed_not_a_spec_error(
    emu: Emulator, tmp_path: Path
) -> None:
    at = Place(emu)
    a, b = (s.series_uid for s in at.series_in(WHOLE)[:2])
    lock = lock_with(emu, tmp_path, f'  - series: ["{a}", "{b}"]\n    collection: {WHOLE}\n')
    emu.remove_series(a)
    report = drift_of(emu, lock)
    assert_exactly(report, {("series-removed", a, "", "", "", "")})
    assert "no longer resolvable as locked" in str(report.facts["selection"])


def test_a_listed_study_that_is_no_longer_served(emu: Emulator, tmp_path: Path) -> None:
    at = Place(emu)
    study = at.series_in(WHOLE)[0].study_uid
    other = next(s for s in at.series_in(PARTIAL) if s.study_uid != study).study_uid
    lock = lock_with(emu, tmp_path, f'  - studies: ["{study}", "{other}"]\n')
    in_study = [s.series_uid for s in at.original if s.study_uid == study]
    for uid in in_study:
        emu.hide_series(uid)
    expected: set[Key] = {("series-hidden", uid, "", "", "", "") for uid in in_study}
    assert_exactly(drift_of(emu, lock), expected)


def test_everything_gone(emu: Emulator, tmp_path: Path) -> None:
    uid = Place(emu).series_in(WHOLE)[0].series_uid
    lock = lock_with(emu, tmp_path, f'  - series: ["{uid}"]\n')
    emu.remove_series(uid)
    assert_exactly(drift_of(emu, lock), {("series-removed", uid, "", "", "", "")})


def test_a_release_date_moving_out_of_and_into_the_filter(emu: Emulator, tmp_path: Path) -> None:
    at = Place(emu)
    leaving, coming = at.series_in(WHOLE)[0], at.series_in(WHOLE)[1]
    emu.set_release_date(coming.series_uid, "2023-06-01")
    lock = lock_with(emu, tmp_path, f"  - collection: {WHOLE}\n    released_before: 2020-01-01\n")
    emu.set_release_date(leaving.series_uid, "2023-06-01")
    emu.set_release_date(coming.series_uid, "2016-01-01")
    old = leaving.date_released.date().isoformat()
    expected: set[Key] = {
        ("series-removed", leaving.series_uid, "", "", "", ""),
        ("metadata-changed", leaving.series_uid, "", old, "2023-06-01", "release date"),
        ("series-added", coming.series_uid, "", "", "", ""),
    }
    report = drift_of(emu, lock)
    assert_exactly(report, expected)
    removed = next(f for f in report.findings if f.kind == "series-removed")
    assert "still served" in removed.detail


def test_an_edited_cart_no_longer_resolving_to_a_series(emu: Emulator, tmp_path: Path) -> None:
    uids = [s.series_uid for s in Place(emu).series_in(WHOLE)[:3]]
    emu.add_cart("my-cart", uids)
    lock = lock_with(emu, tmp_path, "  - cart: my-cart\n")
    cart = emu.corpus.carts[0]
    emu.corpus.carts[0] = dataclasses.replace(cart, series_uids=tuple(uids[:2]))
    assert_exactly(drift_of(emu, lock), {("series-removed", uids[2], "", "", "", "")})


def test_read_lock_returns_the_embedded_spec(emu: Emulator, tmp_path: Path) -> None:
    lock = lock_with(emu, tmp_path, f"  - collection: {WHOLE}\n")
    contents = read_lock(lock)
    assert contents.spec.select[0].collection == WHOLE
    assert len(contents.series) == 12 and sum(map(len, contents.images.values())) == 36


def test_fast_mode_without_a_whole_collection_asks_the_patients_live(
    emu: Emulator, tmp_path: Path
) -> None:
    lock = lock_with(
        emu, tmp_path, f"  - collection: {PARTIAL}\n    patients: [{PARTIAL_PATIENT}]\n"
    )
    report = drift_of(emu, lock, fast=True)
    assert report.clean and report.facts["requests"] == 4  # 1 patient, resolution, feed
    assert "staleness_window" not in report.facts
    assert "no whole collection" in str(report.facts["mode"])


class ShortListing(ArchiveView):
    """The real archive, except that its ``getSeries`` listings lack one series that it
    still serves (``getSeriesMetadata`` returns it): an incomplete listing (protocol §4.3)."""

    def __init__(self, client: NbiaClient, omitted: str) -> None:
        super().__init__(client)
        self.omitted = omitted

    def series(
        self,
        *,
        collection: str | None = None,
        patient_id: str | None = None,
        study_uid: str | None = None,
    ) -> list[SeriesInfo]:
        found = super().series(collection=collection, patient_id=patient_id, study_uid=study_uid)
        return [info for info in found if info.series_uid != self.omitted]


def drift_with_short_listing(emu: Emulator, lock: Path, omitted: str) -> AuditReport:
    with client_for(emu) as client:
        return check_drift(lock, ShortListing(client, omitted))


def collection_doi(emu: Emulator, name: str) -> str:
    return next(c.doi for c in emu.corpus.collections if c.name == name)


@pytest.mark.parametrize("other", ["doi", "cart", "text"])
def test_a_short_listing_is_not_a_removal_whatever_other_selectors_the_spec_holds(
    other: str, emu: Emulator, tmp_path: Path
) -> None:
    # A DOI, cart or text selector elsewhere in the spec must not make a collection's short
    # listing believable: that series is reached by its collection alone.
    elsewhere = at_partial = Place(emu).series_in(PARTIAL, PARTIAL_PATIENT)
    emu.add_cart("my-cart", [s.series_uid for s in at_partial])
    line = {
        "doi": f"  - doi: {collection_doi(emu, PARTIAL)}\n",
        "cart": "  - cart: my-cart\n",
        "text": f"  - text: {elsewhere[0].series_uid}\n",
    }[other]
    lock = lock_with(emu, tmp_path, f"  - collection: {WHOLE}\n" + line)
    omitted = Place(emu).series_in(WHOLE)[0].series_uid
    report = drift_with_short_listing(emu, lock, omitted)
    assert not report.findings and not report.complete and not report.clean
    status = {s.series_uid: s for s in report.series}[omitted]
    assert status.status == "not-checked" and "incomplete" in status.detail


def test_a_short_listing_and_a_cart_edit_are_told_apart_series_by_series(
    emu: Emulator, tmp_path: Path
) -> None:
    in_cart = [s.series_uid for s in Place(emu).series_in(PARTIAL, PARTIAL_PATIENT)[:3]]
    emu.add_cart("my-cart", in_cart)
    lock = lock_with(emu, tmp_path, f"  - collection: {WHOLE}\n  - cart: my-cart\n")
    cart = emu.corpus.carts[0]
    emu.corpus.carts[0] = dataclasses.replace(cart, series_uids=tuple(in_cart[:2]))
    omitted = Place(emu).series_in(WHOLE)[0].series_uid
    report = drift_with_short_listing(emu, lock, omitted)
    # Only the cart could have selected in_cart[2]: leaving the cart is a real removal.
    assert {(f.kind, f.series_uid) for f in report.findings} == {("series-removed", in_cart[2])}
    assert not report.complete
    statuses = {s.series_uid: s.status for s in report.series}
    assert statuses[omitted] == "not-checked" and statuses[in_cart[2]] == "problem"


def test_a_series_leaving_a_doi_selector_without_a_doi_change_is_not_believed(
    emu: Emulator, tmp_path: Path
) -> None:
    # NBIA resolves a DOI from the series' own DataDescriptionURI (protocol §7): with that
    # unchanged, a DOI answer that lacks the series is short, not a removal.
    lock = lock_with(emu, tmp_path, f"  - doi: {collection_doi(emu, PARTIAL)}\n")
    target = Place(emu).series_in(PARTIAL)[0].series_uid

    class ShortDoiAnswer(ArchiveView):
        def series_for_doi(self, doi: str) -> list[str]:
            return [uid for uid in super().series_for_doi(doi) if uid != target]

    with client_for(emu) as client:
        report = check_drift(lock, ShortDoiAnswer(client))
    assert not report.findings and not report.complete
    assert {s.series_uid: s.status for s in report.series}[target] == "not-checked"


REACH_SPEC = """
name: reach
server: https://example.org/nbia-api/services
select:
  - collection: C1
    patients: [P1]
    modality: [ct]
  - studies: ["1.2.3"]
  - series: ["1.2.5"]
    collection: C2
  - doi: https://doi.org/10.7937/X
  - search: {modality: [MR]}
    collection: C3
exclude:
  - text: lung
    released_before: 2015-01-01
"""


@pytest.mark.parametrize(
    ("uid", "meta", "reach"),
    [
        ("9", SeriesMeta(collection="C1", patient_id="P1", modality="CT"), Reach(by_fields=True)),
        ("9", SeriesMeta(collection="C1", patient_id="P2", modality="CT"), Reach()),
        ("9", SeriesMeta(collection="C1", patient_id="P1", modality="MR"), Reach()),
        ("9", SeriesMeta(collection="C9", study_uid="1.2.3"), Reach(by_fields=True)),
        ("1.2.5", SeriesMeta(collection="C2"), Reach(by_fields=True)),
        ("1.2.5", SeriesMeta(collection="C1"), Reach()),
        ("9", SeriesMeta(collection="C9", doi="https://doi.org/10.7937/X"), Reach(by_fields=True)),
        ("9", SeriesMeta(collection="C9", doi="https://doi.org/10.7937/Y"), Reach()),
        ("9", SeriesMeta(collection="C3"), Reach(external=True)),
        (
            "9",
            SeriesMeta(collection="C3", released="2014-02-03"),
            Reach(external=True, excluded=True),
        ),
        ("9", SeriesMeta(collection="C9", released="2016-02-03"), Reach()),
    ],
)
def test_reach_names_the_selectors_that_could_have_selected_a_series(
    uid: str, meta: SeriesMeta, reach: Reach
) -> None:
    assert reach_of(parse_spec(REACH_SPEC), uid, meta) == reach

"""Re-resolving the lock's own spec: rebuilt from the lock (not from files), and tolerant of
exactly the drift that `lock` would refuse (UIDs no longer served, selectors now empty)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from drift_support import (
    CORPUS,
    PARTIAL,
    PARTIAL_PATIENT,
    WHOLE,
    Key,
    Place,
    assert_exactly,
    client_for,
    make_lock,
)

from nbia_audit.archive import ArchiveView
from nbia_audit.drift import check_drift, read_lock
from nbia_audit.drift_select import prepare
from nbia_audit.emulator import Emulator
from nbia_audit.errors import SpecError
from nbia_audit.findings import AuditReport
from nbia_audit.spec import parse_spec, spec_from_normalised

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


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(CORPUS) as running:
        yield running


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

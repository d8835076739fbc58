"""`drift` against the real emulator: every mutation it offers, alone and combined, in normal
and fast mode; an unchanged upstream (after the nightly job, with token refreshes) is clean."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client.auth import Credentials
from nbia_audit.drift.run import check_drift
from nbia_audit.emulator import Emulator
from nbia_audit.findings import AuditReport
from nbia_audit.store.textlock import read_text_lock
from tests.support.drift import (
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


@pytest.fixture
def archive(emu: Emulator) -> Iterator[ArchiveView]:
    with client_for(emu) as client:
        yield ArchiveView(client)


def license_text(emu: Emulator, short_name: str) -> str:
    lic = emu.corpus.license(short_name)
    assert lic is not None and lic.long_name and lic.url
    return f"{lic.long_name} <{lic.url}>"


# Each scenario mutates the archive and returns exactly the findings it must produce.
Scenario = Callable[[Emulator, Place], set[Key]]


def replace_image(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(WHOLE)[0].series_uid
    sop, old = at.first_image(series)
    return {("image-changed", series, sop, str(old), emu.replace_image(sop), "")}


def add_image(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(PARTIAL, PARTIAL_PATIENT)[1].series_uid
    sop = emu.add_image(series)
    return {("image-added", series, sop, "", str(at.stored(sop)), "")}


def remove_image(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(WHOLE)[2].series_uid
    sop, old = at.first_image(series)
    emu.remove_image(sop)
    return {("image-removed", series, sop, str(old), "", "")}


def remove_every_image(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(WHOLE)[7].series_uid
    images = list(emu.corpus.images_of(series))
    for image in images:
        emu.remove_image(image.sop_uid)
    # The series row stays and is still listed: its images are gone, one finding each.
    return {("image-removed", series, i.sop_uid, str(i.stored_md5), "", "") for i in images}


def add_series_to_locked_study(emu: Emulator, at: Place) -> set[Key]:
    uid = emu.add_series(study_uid=at.series_in(WHOLE)[3].study_uid)
    return {("series-added", uid, "", "", "", "")}


def add_series_new_patient(emu: Emulator, at: Place) -> set[Key]:
    return {("series-added", emu.add_series(collection=WHOLE), "", "", "", "")}


def add_series_selected_patient(emu: Emulator, at: Place) -> set[Key]:
    uid = emu.add_series(collection=PARTIAL, patient_id=PARTIAL_PATIENT)
    return {("series-added", uid, "", "", "", "")}


def add_series_unselected_patient(emu: Emulator, at: Place) -> set[Key]:
    emu.add_series(collection=PARTIAL, patient_id="EMU-LUNG-002")
    return set()


def remove_series(emu: Emulator, at: Place) -> set[Key]:
    uid = at.series_in(WHOLE)[4].series_uid
    emu.remove_series(uid)
    return {("series-removed", uid, "", "", "", "")}


def hide_series(emu: Emulator, at: Place) -> set[Key]:
    uid = at.series_in(PARTIAL, PARTIAL_PATIENT)[0].series_uid
    emu.hide_series(uid)
    return {("series-hidden", uid, "", "", "", "")}


def set_license(emu: Emulator, at: Place) -> set[Key]:
    old, new = license_text(emu, "CC BY 4.0"), license_text(emu, "CC BY-NC 4.0")
    emu.set_license(WHOLE, "CC BY-NC 4.0")
    return {
        ("metadata-changed", s.series_uid, "", old, new, "license") for s in at.series_in(WHOLE)
    }


def set_doi(emu: Emulator, at: Place) -> set[Key]:
    emu.set_doi(WHOLE, "https://doi.org/10.7937/EMU.NEW-DOI")
    now = {s.series_uid: s.doi for s in emu.corpus.series}
    # Third-party analyses keep their own DOI (the emulator changes the others only).
    return {
        ("metadata-changed", s.series_uid, "", str(s.doi), str(now[s.series_uid]), "DOI")
        for s in at.series_in(WHOLE)
        if s.series_uid in now and s.doi != now[s.series_uid]
    }


def set_release_date_of_series(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(WHOLE)[5]
    emu.set_release_date(series.series_uid, "2021-03-04")
    old = series.date_released.date().isoformat()
    return {("metadata-changed", series.series_uid, "", old, "2021-03-04", "release date")}


def set_release_date_of_collection(emu: Emulator, at: Place) -> set[Key]:
    locked = at.series_in(PARTIAL, PARTIAL_PATIENT)
    emu.set_release_date(PARTIAL, "2022-01-02")
    return {
        (
            "metadata-changed",
            s.series_uid,
            "",
            s.date_released.date().isoformat(),
            "2022-01-02",
            "release date",
        )
        for s in locked
    }


def shorten_md5(emu: Emulator, at: Place) -> set[Key]:
    image = next(
        i
        for s in at.series_in(WHOLE)
        for i in emu.corpus.images_of(s.series_uid)
        if str(i.stored_md5).startswith("0")
    )
    short = emu.shorten_md5(image.sop_uid)
    assert short and len(short) < 32
    return {("image-changed", image.series_uid, image.sop_uid, str(image.stored_md5), short, "")}


def set_stored_md5_null(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(WHOLE)[6].series_uid
    sop, old = at.first_image(series)
    emu.set_stored_md5(sop, None)
    return {("image-changed", series, sop, str(old), "NULL", "")}


def change_unselected_series(emu: Emulator, at: Place) -> set[Key]:
    series = at.series_in(PARTIAL, "EMU-LUNG-003")[0].series_uid
    emu.replace_image(at.first_image(series)[0])
    emu.hide_series(at.series_in(PARTIAL, "EMU-LUNG-002")[0].series_uid)
    return set()


SCENARIOS: dict[str, Scenario] = {
    f.__name__: f
    for f in (
        replace_image,
        add_image,
        remove_image,
        remove_every_image,
        add_series_to_locked_study,
        add_series_new_patient,
        add_series_selected_patient,
        add_series_unselected_patient,
        remove_series,
        hide_series,
        set_license,
        set_doi,
        set_release_date_of_series,
        set_release_date_of_collection,
        shorten_md5,
        set_stored_md5_null,
        change_unselected_series,
    )
}
# Changes that move nothing a listing shows (stored MD5 strings only): --fast sees them once
# the archive's nightly job has refreshed the collection hash, not before.
INVISIBLE_TO_FAST_BEFORE_NIGHTLY = {"shorten_md5", "set_stored_md5_null"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("mode", ["normal", "fast-after-nightly", "fast"])
def test_each_mutation_gives_exactly_its_findings(
    name: str, mode: str, lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    expected = SCENARIOS[name](emu, Place(emu))
    if mode == "fast-after-nightly":
        emu.run_nightly_job()
    report = check_drift(lock, archive, fast=mode != "normal")
    if mode == "fast" and name in INVISIBLE_TO_FAST_BEFORE_NIGHTLY:
        expected = set()
        assert "staleness_window" in report.facts
    assert_exactly(report, expected)
    assert report.clean == (not expected)


def test_every_mutation_at_once(lock: Path, emu: Emulator, archive: ArchiveView) -> None:
    at = Place(emu)
    expected: set[Key] = set()
    for name in (
        "replace_image",
        "add_image",
        "remove_image",
        "remove_every_image",
        "add_series_to_locked_study",
        "add_series_new_patient",
        "add_series_selected_patient",
        "add_series_unselected_patient",
        "remove_series",
        "hide_series",
        "set_license",
        "set_doi",
        "set_release_date_of_series",
        "set_release_date_of_collection",
        "shorten_md5",
        "set_stored_md5_null",
        "change_unselected_series",
    ):
        expected |= SCENARIOS[name](emu, at)
    # A series that is gone from the dataset is reported as gone, nothing more.
    gone = {key[1] for key in expected if key[0] in ("series-removed", "series-hidden")}
    expected = {k for k in expected if not (k[0] == "metadata-changed" and k[1] in gone)}
    emu.run_nightly_job()
    for fast in (False, True):
        report = check_drift(lock, archive, fast=fast)
        assert_exactly(report, expected)
        assert not report.clean
    assert {k[0] for k in expected} == {
        "series-added",
        "series-removed",
        "series-hidden",
        "image-added",
        "image-removed",
        "image-changed",
        "metadata-changed",
    }


def assert_clean(report: AuditReport) -> None:
    assert report.clean, (report.findings, report.facts)
    assert all(s.status == "ok" for s in report.series) and len(report.series) == 16


def test_unchanged_upstream_costs_about_one_request_per_patient(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    emu.reset_request_log()
    report = check_drift(lock, archive)
    assert_clean(report)
    # 4 covered patients + the spec's resolution (3) + the change feed (1); no series asked.
    assert report.facts["requests"] == emu.request_count == 8
    assert not [r for r in emu.requests if "SeriesInstanceUID" in dict(r.params)]
    assert "4 asked live" in str(report.facts["patient_hashes"])
    assert "nothing about changes since" in str(report.facts["collection_hashes"])


def test_fast_mode_costs_about_one_request_per_collection(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    emu.reset_request_log()
    report = check_drift(lock, archive, fast=True)
    assert_clean(report)
    # 1 collection hash + 1 patient of the partly selected collection + resolution + feed.
    assert report.facts["requests"] == emu.request_count == 6
    assert "nightly" in str(report.facts["staleness_window"])
    ok = {s.detail for s in report.series}
    assert any("as of the archive's last nightly refresh" in d for d in ok)


def test_unchanged_upstream_right_after_the_nightly_job(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    emu.run_nightly_job()
    emu.clear_md5_cache()
    assert_clean(check_drift(lock, archive))
    assert_clean(check_drift(lock, archive, fast=True))


def test_a_stale_collection_hash_is_confirmed_below_not_reported(tmp_path: Path) -> None:
    with Emulator.from_spec(CORPUS) as emu:
        # Changed before locking, and the nightly job has not run since: the archive's cached
        # collection hash still describes the old collection, the lock the new one.
        emu.remove_image(Place(emu).first_image(Place(emu).series_in(WHOLE)[0].series_uid)[0])
        lock = make_lock(emu, tmp_path)
        with client_for(emu) as client:
            report = check_drift(lock, ArchiveView(client), fast=True)
    assert_clean(report)
    assert "may be a stale cache" in str(report.facts["collection_hashes"])
    assert "patient_hashes" in report.facts


def test_show_series_after_locking_is_an_added_series(tmp_path: Path) -> None:
    with Emulator.from_spec(CORPUS) as emu:
        hidden = Place(emu).series_in(WHOLE)[1].series_uid
        emu.hide_series(hidden)
        lock = make_lock(emu, tmp_path)
        emu.show_series(hidden)
        with client_for(emu) as client:
            report = check_drift(lock, ArchiveView(client))
    assert_exactly(report, {("series-added", hidden, "", "", "", "")})


class ExpireOnce:
    """Expire every token once, when ``stage`` first reports progress: the run's other
    requests of that stage are in flight with a token the archive now rejects (401 on hash
    endpoints, an empty 200 on list endpoints, protocol §4.3)."""

    def __init__(self, emu: Emulator, stage: str, *, at_end: bool = False) -> None:
        self.emu, self.stage, self.at_end, self.fired = emu, stage, at_end, False

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.at_end and done < total:
            return
        if stage.startswith(self.stage) and not self.fired:
            self.fired = True
            self.emu.expire_tokens()


def test_token_refreshed_mid_run_reports_nothing_or_exactly_the_change(tmp_path: Path) -> None:
    alice = Credentials("alice", "pw")
    with Emulator.from_spec(CORPUS, users={"alice": "pw"}) as emu:
        lock = make_lock(emu, tmp_path, credentials=alice)
        with client_for(emu, credentials=alice) as client:
            view = ArchiveView(client)
            emu.reset_request_log()
            for fast in (False, True):
                expire = ExpireOnce(emu, "change feed")
                assert_clean(check_drift(lock, view, fast=fast, on_progress=expire))
                assert expire.fired
            renewals = [r for r in emu.requests if r.endpoint == "token"]
            assert len(renewals) >= 2 and any(r.status == 401 for r in emu.requests)
            expected = remove_series(emu, Place(emu)) | add_image(emu, Place(emu))
            for stage in ("change feed", "hash tree, round 2", "image lists"):
                expire = ExpireOnce(emu, stage)
                assert_exactly(check_drift(lock, view, on_progress=expire), expected)
                assert expire.fired
            # v4 getSOPInstanceUIDs ignores the token (InstanceDAOImpl.java:93-119): one ask.
            emu.reset_request_log()
            expire = ExpireOnce(emu, "metadata of series no longer selected", at_end=True)
            assert_exactly(check_drift(lock, view, on_progress=expire), expected)
            lists = [r for r in emu.requests if r.endpoint == "getSOPInstanceUIDs"]
            assert expire.fired and len(lists) == 1
        # v2 filters the image list by authorization: asked with a token the archive rejects,
        # it answers an empty 200, which must not read as "every image removed".
        with client_for(emu, credentials=alice, api="v2") as client:
            view = ArchiveView(client)
            emu.reset_request_log()
            expire = ExpireOnce(emu, "metadata of series no longer selected", at_end=True)
            assert_exactly(check_drift(lock, view, on_progress=expire), expected)
            lists = [r for r in emu.requests if r.endpoint == "getSOPInstanceUIDs"]
            assert expire.fired and len(lists) == 2


def test_a_token_rejected_again_and_again_is_incomplete_never_clean(tmp_path: Path) -> None:
    alice = Credentials("alice", "pw")
    with Emulator.from_spec(CORPUS, users={"alice": "pw"}) as emu:
        lock = make_lock(emu, tmp_path, credentials=alice)
        with client_for(emu, credentials=alice) as client:
            report = check_drift(
                lock, ArchiveView(client), on_progress=lambda *_: emu.expire_tokens()
            )
    if not report.complete:
        assert not report.clean and "not_checked" in report.facts
        assert any("401" in s.detail for s in report.series if s.status == "not-checked")
    else:  # the renewals happened to win every race: then it must be exactly right
        assert_clean(report)


def test_series_only_lock_reports_series_level_change(tmp_path: Path) -> None:
    with Emulator.from_spec(CORPUS) as emu:
        lock = make_lock(emu, tmp_path, series_only=True)
        at = Place(emu)
        series = at.series_in(WHOLE)[0]
        emu.replace_image(at.first_image(series.series_uid)[0])
        with client_for(emu) as client:
            new_hash = client.md5_hierarchy(series_uid=series.series_uid)
            report = check_drift(lock, ArchiveView(client))
    old_hash = next(s.series_hash for s in _locked(lock) if s.series_uid == series.series_uid)
    assert_exactly(report, {("image-changed", series.series_uid, "", old_hash, new_hash, "")})
    assert "series-only" in report.findings[0].detail
    assert "0 image MD5s" not in str(report.facts["images"])


def _locked(lock: Path) -> list:  # type: ignore[type-arg]
    from nbia_audit.store.database import LockDatabase
    from nbia_audit.store.textlock import database_path

    with LockDatabase(database_path(lock)) as db:
        return list(db.series())


def test_details_say_what_happened(lock: Path, emu: Emulator, archive: ArchiveView) -> None:
    at = Place(emu)
    shorten_md5(emu, at)
    hide_series(emu, at)
    remove_series(emu, at)
    findings = {f.kind: f for f in check_drift(lock, archive).findings}
    assert "same content" in findings["image-changed"].detail
    assert "no longer served" in findings["series-hidden"].detail
    assert "deleted" in findings["series-removed"].detail


def test_one_changed_image_costs_the_depth_of_the_tree(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    replace_image(emu, Place(emu))
    emu.reset_request_log()
    report = check_drift(lock, archive)
    # 8 as unchanged + 2 studies + 2 series of the changed study + 1 image list + 3 MD5s.
    assert report.facts["requests"] == emu.request_count == 16


def test_an_image_swapped_for_one_with_the_same_stored_md5_is_seen(tmp_path: Path) -> None:
    # A series hash commits to the stored MD5 strings, not to the UIDs: swapping an image
    # whose stored MD5 is NULL for another NULL one leaves every hash as it was.
    with Emulator.from_spec(CORPUS) as emu:
        at = Place(emu)
        series = at.series_in(WHOLE)[0].series_uid
        old_sop = at.first_image(series)[0]
        emu.set_stored_md5(old_sop, None)
        lock = make_lock(emu, tmp_path, problems_ok=True)  # "missing-archive-md5"
        with client_for(emu) as client:
            view = ArchiveView(client)
            emu.reset_request_log()
            unchanged = check_drift(lock, view)
            assert_clean(unchanged)
            assert unchanged.facts["requests"] == 9  # one image list more than usual
            assert "missing or repeated archive MD5s" in str(unchanged.facts["images"])
            before = client.md5_hierarchy(series_uid=series)
            emu.remove_image(old_sop)
            new_sop = emu.add_image(series)
            emu.set_stored_md5(new_sop, None)
            assert client.md5_hierarchy(series_uid=series) == before
            report = check_drift(lock, view)
    assert_exactly(
        report,
        {
            ("image-removed", series, old_sop, "NULL", "", ""),
            ("image-added", series, new_sop, "", "NULL", ""),
        },
    )


def test_the_change_feed_starts_the_day_before_the_lock(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    # getUpdatedSeries lists releases strictly after a date: asked from the lock's own day, a
    # release later that same day (after the lock was made) would never be listed.
    day = dt.date.fromisoformat(read_text_lock(lock).header.resolved_at[:10])
    released = emu.corpus.series[0].series_uid
    emu.set_release_date(released, dt.datetime.combine(day, dt.time(23, 59)))
    emu.reset_request_log()
    report = check_drift(lock, archive)
    (asked,) = [r for r in emu.requests if r.endpoint == "getUpdatedSeries"]
    before = day - dt.timedelta(days=1)
    assert dict(asked.params)["fromDate"] == before.strftime("%m-%d-%Y")
    assert str(report.facts["change_feed"]).startswith(
        f"getUpdatedSeries since {before.isoformat()}: 1 series released, 1 of them locked"
    )

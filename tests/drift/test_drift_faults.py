"""`drift` under injected 5xx, resets and timeouts: a correct report, an incomplete one, or an
error (exit 3) - never "no drift" from a check that could not be completed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client.transport import RetryPolicy, Timeouts
from nbia_audit.drift.run import check_drift
from nbia_audit.emulator import Emulator, Fault
from nbia_audit.errors import ApiError
from tests.support.drift import (
    PARTIAL,
    PARTIAL_PATIENT,
    WHOLE,
    Key,
    Place,
    assert_exactly,
    client_for,
    keys,
)

# Only an injected delay (1.5 s) exceeds the read timeout; a normal answer on a loaded machine
# must not (0.3 s could: a retried or failed request for no reason).
QUICK = Timeouts(connect=5.0, read=1.0)


@pytest.fixture
def archive(emu: Emulator) -> Iterator[ArchiveView]:
    with client_for(emu, timeouts=QUICK) as client:
        yield ArchiveView(client)


def mutate(emu: Emulator) -> set[Key]:
    """A change at every depth: an image, a removed series, an added one."""
    at = Place(emu)
    series = at.series_in(WHOLE)[0].series_uid
    sop, old = at.first_image(series)
    removed = at.series_in(PARTIAL, PARTIAL_PATIENT)[0].series_uid
    emu.remove_series(removed)
    added = emu.add_series(collection=WHOLE)
    return {
        ("image-changed", series, sop, str(old), emu.replace_image(sop), ""),
        ("series-removed", removed, "", "", "", ""),
        ("series-added", added, "", "", "", ""),
    }


ENDPOINTS = (
    "getCollectionValues",
    "getSeries",
    "getUpdatedSeries",
    "getMD5Hierarchy",
    "getSeriesMetadata",
    "getSOPInstanceUIDs",
    "getMD5HashForImage",
)


@pytest.mark.parametrize("kind", ["status", "reset"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_transient_failures_are_retried_into_a_correct_report(
    kind: str, endpoint: str, lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    expected = mutate(emu)
    # Two failures, three attempts per request (client_for's retry policy).
    emu.add_fault(Fault(kind, status=503, endpoint=endpoint, times=2))  # type: ignore[arg-type]
    assert_exactly(check_drift(lock, archive), expected)


def test_timeouts_are_retried_into_a_correct_report(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    expected = mutate(emu)
    emu.add_fault(Fault("latency", delay=1.5, endpoint="getMD5Hierarchy", times=2))
    assert_exactly(check_drift(lock, archive), expected)


def test_hashes_that_never_answer_make_an_incomplete_report_never_clean(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    emu.add_fault(Fault("status", status=503, endpoint="getMD5Hierarchy"))
    report = check_drift(lock, archive)
    assert not report.complete and not report.clean and not report.findings
    assert {s.status for s in report.series} == {"not-checked"}
    assert "503" in report.series[0].detail


def test_an_unreachable_image_step_keeps_the_other_findings(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    expected = mutate(emu)
    emu.add_fault(Fault("latency", delay=1.5, endpoint="getMD5HashForImage"))
    report = check_drift(lock, archive)
    assert not report.complete and not report.clean
    changed = next(k for k in expected if k[0] == "image-changed")
    assert keys(report.findings) - {k for k in keys(report.findings) if k[1] == changed[1]} == (
        expected - {changed}
    )
    status = {s.series_uid: s for s in report.series}[changed[1]]
    assert status.status == "not-checked" and "MD5" in status.detail


def test_an_unanswered_resolution_raises(lock: Path, emu: Emulator, archive: ArchiveView) -> None:
    emu.add_fault(Fault("status", status=503, endpoint="getSeries"))
    with pytest.raises(ApiError, match="503"):
        check_drift(lock, archive)


def test_the_change_feed_is_only_a_hint(lock: Path, emu: Emulator, archive: ArchiveView) -> None:
    expected = mutate(emu)
    emu.add_fault(Fault("status", status=503, endpoint="getUpdatedSeries"))
    report = check_drift(lock, archive)
    assert_exactly(report, expected)
    assert "could not be asked" in str(report.facts["change_feed"])


def test_fast_mode_without_its_change_feed_asks_the_patients_live(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    # A change of stored MD5 strings alone: --fast cannot see it under a matching cached
    # collection hash. With the feed failing, fast mode cannot choose which patients to
    # re-check, so it must not keep claiming its guarantee: it asks every patient live.
    image = next(
        i
        for s in Place(emu).series_in(WHOLE)
        for i in emu.corpus.images_of(s.series_uid)
        if str(i.stored_md5).startswith("0")
    )
    short = emu.shorten_md5(image.sop_uid)
    emu.add_fault(Fault("status", status=503, endpoint="getUpdatedSeries"))
    report = check_drift(lock, archive, fast=True)
    assert_exactly(
        report,
        {("image-changed", image.series_uid, image.sop_uid, str(image.stored_md5), short, "")},
    )
    feed = str(report.facts["change_feed"])
    assert "could not be asked" in feed and "not needed" not in feed
    assert "asked live instead" in feed and "change feed could not" in str(report.facts["mode"])
    assert "staleness_window" not in report.facts and "patient_hashes" in report.facts


def test_fast_mode_without_its_change_feed_is_still_clean_when_nothing_changed(
    lock: Path, emu: Emulator, archive: ArchiveView
) -> None:
    emu.add_fault(Fault("status", status=503, endpoint="getUpdatedSeries"))
    report = check_drift(lock, archive, fast=True)
    assert report.clean and "4 asked live" in str(report.facts["patient_hashes"])


@pytest.mark.parametrize("seed", range(12))
def test_random_faults_never_give_a_wrong_complete_report(
    seed: int, lock: Path, emu: Emulator
) -> None:
    rng = random.Random(seed)
    expected = mutate(emu) if rng.random() < 0.7 else set()
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["status", "reset", "latency"])
        emu.add_fault(
            Fault(
                kind,  # type: ignore[arg-type]
                endpoint=rng.choice(ENDPOINTS),
                times=rng.choice([1, 2, 3, None]),
                delay=1.5 if kind == "latency" else 0.0,
                status=rng.choice([500, 502, 503]),
            )
        )
    retry = RetryPolicy(attempts=2, base=0.001, cap=0.01)
    with client_for(emu, retry=retry, timeouts=QUICK) as client:
        try:
            report = check_drift(lock, ArchiveView(client))
        except ApiError:
            return  # exit 3: nothing concluded, nothing claimed
    if report.complete:
        assert keys(report.findings) == expected
    else:
        assert not report.clean
        assert_truthful(keys(report.findings), expected)


def assert_truthful(found: set[Key], expected: set[Key]) -> None:
    """Every finding of an incomplete report is true: expected, or the series-level form of
    an expected image change whose images could not be listed."""
    changed = {k[1] for k in expected if k[0] == "image-changed"}
    for key in found - expected:
        assert key[0] == "image-changed" and key[2] == "" and key[1] in changed, key

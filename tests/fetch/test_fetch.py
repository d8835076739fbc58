"""`fetch` against the emulator over loopback: verified placement, resume, faults, pins."""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.transport import RetryPolicy, Timeouts
from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from nbia_audit.errors import ApiUnavailable, DownloadError, SpecError, StoreError
from nbia_audit.fetch.placement import Workspace
from nbia_audit.fetch.run import FetchReport, SeriesRetry, fetch_dataset
from nbia_audit.models import LockedImage
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.localstate import STATE_DIR, LocalState, stat_key
from nbia_audit.store.textlock import database_path, read_text_lock
from tests.support.fetch import (
    FAST,
    FAST_SERIES,
    classic_paths,
    client_for,
    make_lock,
    private_files,
    proxy,
    read_lock,
    state_paths,
    tree,
)
from tests.support.lock_tools import rewrite_pair

SPEC = CorpusSpec(seed=9, collections=2, patients=2, studies=1, series=2, images=3)
USERS = {"alice": "secret"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC, users=USERS) as running:
        yield running


def fetch(
    lock: Path, dest: Path, url: str, credentials: Credentials | None = None, **options: object
) -> FetchReport:
    options.setdefault("retry", FAST_SERIES)
    with client_for(url, credentials) as client:
        return fetch_dataset(lock, dest, client, **options)  # type: ignore[arg-type]


def downloads(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.endpoint == "getImageWithMD5Hash")


def assert_failed_exactly(report: FetchReport, dest: Path, emu: Emulator, uids: set[str]) -> None:
    """The run names exactly ``uids`` as failed, none of their files are anywhere in ``dest``,
    and every other series is complete and verified."""
    assert {s.series_uid for s in report.failed} == uids
    others = {s.series_uid for s in emu.corpus.series} - uids
    assert tree(dest) == classic_paths(emu, others)
    assert state_paths(dest) == classic_paths(emu, others)
    failed_sops = {i.sop_uid for u in uids for i in emu.corpus.images_of(u)}
    assert not any(Path(p).stem in failed_sops for p in tree(dest))


def test_places_every_image_verified_and_records_it(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    report = fetch(lock, dest, emu.base_url, workers=3)
    expected = classic_paths(emu)
    assert report.ok and len(report.fetched) == 8 and not report.skipped
    assert tree(dest) == expected
    assert report.bytes_placed == sum(
        len(emu.corpus.image_bytes(i.sop_uid)) for i in emu.corpus.images
    )
    assert private_files(dest) == {"state.db", "fetch.lock"}
    root = read_text_lock(lock).header.root_digest
    with LocalState(dest) as state:
        records = list(state.records())
    assert {r.path: r.md5 for r in records} == expected
    for record in records:
        assert record.stat == stat_key(dest / record.path)
        assert record.lock_root == root and record.verified_at.endswith("Z")
        assert record.sop_uid == Path(record.path).stem


def test_rerun_skips_what_is_in_place_without_downloading(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    fetch(lock, dest, emu.base_url)
    emu.reset_request_log()
    again = fetch(lock, dest, emu.base_url)
    assert len(again.skipped) == 8 and not again.fetched and emu.request_count == 0
    assert again.series[0].bytes > 0


def test_changed_files_are_rehashed_and_bad_ones_fetched_again(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    fetch(lock, dest, emu.base_url)
    # One change per series: a deletion re-fetches its whole series, which would hide what
    # happens to a touched or modified file beside it.
    by_series: dict[str, list[str]] = {}
    for rel in sorted(tree(dest)):
        by_series.setdefault(Path(rel).parent.name, []).append(rel)
    (touched_series, touched), (modified_series, modified), (deleted_series, deleted) = [
        (uid, rels[0]) for uid, rels in sorted(by_series.items())[:3]
    ]
    with LocalState(dest) as state:
        before = state.get(touched)
    assert before is not None
    os.utime(dest / touched, ns=(1, 1))  # same bytes, new stat key
    data = bytearray((dest / modified).read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    (dest / modified).write_bytes(bytes(data))
    (dest / deleted).unlink()
    emu.reset_request_log()
    report = fetch(lock, dest, emu.base_url)
    assert tree(dest) == classic_paths(emu)
    # The modified file is re-hashed, found wrong and its series fetched again; the touched
    # one is re-hashed, found right, kept, and its record re-dated to its new stat key.
    assert {s.series_uid for s in report.fetched} == {modified_series, deleted_series}
    assert touched_series in {s.series_uid for s in report.skipped}
    assert downloads(emu) == 2
    with LocalState(dest) as state:
        record = state.get(touched)
    assert record is not None and record.stat == stat_key(dest / touched)
    assert record.stat != before.stat and record.md5 == before.md5


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=503, endpoint="getImageWithMD5Hash", times=3),
        Fault("status", status=500, endpoint="getSeriesSize", times=2),
        Fault("rate_limit", retry_after=1, times=4),
        Fault("reset", endpoint="getImageWithMD5Hash", times=3),
        Fault("truncate", after_bytes=3000, endpoint="getImageWithMD5Hash", times=4),
        Fault("drop_images", count=1, times=3),
    ],
    ids=lambda f: f.kind,
)
def test_transient_faults_end_with_everything_placed(
    tmp_path: Path, emu: Emulator, fault: Fault
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    emu.add_fault(fault)
    report = fetch(lock, dest, emu.base_url, retry=SeriesRetry(5, 0.001, 0.01))
    assert report.ok, [s.reasons for s in report.failed]
    assert tree(dest) == classic_paths(emu) == state_paths(dest)
    assert private_files(dest) == {"state.db", "fetch.lock"}
    if fault.kind == "drop_images":
        assert sum(s.attempts - 1 for s in report.fetched) == 3  # each cut ZIP was refused


def test_every_fault_at_once_places_all_or_names_exactly_what_failed(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    for fault in (
        Fault("status", status=502, endpoint="getImageWithMD5Hash", times=2),
        Fault("rate_limit", retry_after=1, times=2),
        Fault("reset", endpoint="getSeriesSize", times=2),
        Fault("truncate", after_bytes=2000, endpoint="getImageWithMD5Hash", times=2),
        Fault("drop_images", count=2, times=4),
        Fault("latency", delay=0.01),
    ):
        emu.add_fault(fault)
    report = fetch(lock, dest, emu.base_url)
    assert_failed_exactly(report, dest, emu, {s.series_uid for s in report.failed})
    for outcome in report.failed:
        assert outcome.attempts == 3 and outcome.reasons


def test_persistently_cut_series_fails_alone_with_nothing_placed(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    emu.add_fault(Fault("drop_images", count=1, times=3))
    report = fetch(lock, dest, emu.base_url, workers=1)
    first = report.series[0]
    assert first.status == "failed" and first.attempts == 3
    assert "md5hashes.csv is missing" in first.reasons[0]
    assert "the ZIP holds 2 images, the lock pins 3, the archive reports 3" in first.reasons[1]
    assert_failed_exactly(report, dest, emu, {first.series_uid})
    assert private_files(dest) == {"state.db", "fetch.lock"}


@pytest.mark.parametrize("when", ["stored-md5-wrong-before-lock", "bytes-replaced-after-lock"])
def test_one_image_with_wrong_bytes_fails_exactly_its_series(
    tmp_path: Path, emu: Emulator, when: str
) -> None:
    victim = emu.corpus.series[3]
    image = emu.corpus.images_of(victim.series_uid)[1]
    if when == "stored-md5-wrong-before-lock":
        emu.set_stored_md5(image.sop_uid, "0123456789abcdef0123456789abcdef")
    lock = make_lock(tmp_path / "lock", emu)
    if when == "bytes-replaced-after-lock":
        emu.replace_image(image.sop_uid)
    dest = tmp_path / "data"
    report = fetch(lock, dest, emu.base_url)
    assert_failed_exactly(report, dest, emu, {victim.series_uid})
    reasons = " ".join(report.failed[0].reasons)
    if when == "stored-md5-wrong-before-lock":
        assert f"image {image.sop_uid} (" in reasons and "computed MD5" in reasons
    else:
        assert "changed upstream" in reasons


def test_tokens_expiring_every_moment_are_renewed(tmp_path: Path) -> None:
    with Emulator.from_spec(SPEC, users=USERS, token_ttl=1.0) as emu:
        lock = make_lock(tmp_path / "lock", emu)
        emu.add_fault(Fault("latency", delay=0.03))
        done = threading.Event()

        def expire() -> None:  # on top of the 1-second lifetime
            while not done.wait(0.25):
                emu.expire_tokens()

        killer = threading.Thread(target=expire, daemon=True)
        killer.start()
        try:
            report = fetch(lock, tmp_path / "data", emu.base_url, Credentials("alice", "secret"))
        finally:
            done.set()
            killer.join()
        assert report.ok and tree(tmp_path / "data") == classic_paths(emu)
        served = [r for r in emu.requests if r.endpoint == "getImageWithMD5Hash"]
        assert served and all(r.token_sent for r in served)
        assert sum(1 for r in emu.requests if r.endpoint == "token") >= 2
        assert any(r.status == 401 for r in emu.requests)


def test_series_only_lock_is_filled_as_images_verify(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu, series_only=True)
    text_before = lock.read_bytes()
    assert not read_lock(lock).images
    victim = emu.corpus.series[0]
    emu.replace_image(emu.corpus.images_of(victim.series_uid)[0].sop_uid)
    report = fetch(lock, tmp_path / "data", emu.base_url)
    assert_failed_exactly(report, tmp_path / "data", emu, {victim.series_uid})
    assert all(s.filled for s in report.fetched)
    locked = read_lock(lock)
    pinned = {s.series_uid for s in locked.series if s.images_pinned}
    assert pinned == {s.series_uid for s in emu.corpus.series} - {victim.series_uid}
    assert {(i.sop_uid, i.archive_md5) for i in locked.images} == {
        (i.sop_uid, i.stored_md5) for u in pinned for i in emu.corpus.images_of(u)
    }
    assert all(i.size for i in locked.images)
    assert lock.read_bytes() == text_before  # the text lock and the root digest do not change
    with LockDatabase(database_path(lock)) as db:
        assert db.header() == read_text_lock(lock).header and db.integrity_ok()
    again = fetch(lock, tmp_path / "data", emu.base_url)
    assert len(again.skipped) == 7 and again.failed[0].series_uid == victim.series_uid


def test_series_selection_and_unknown_series(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    some = {emu.corpus.series[1].series_uid, emu.corpus.series[6].series_uid}
    report = fetch(lock, tmp_path / "data", emu.base_url, series=sorted(some))
    assert {s.series_uid for s in report.series} == some and report.ok
    assert tree(tmp_path / "data") == classic_paths(emu, some)
    with pytest.raises(SpecError, match="not in the lock: 1.2.3"):
        fetch(lock, tmp_path / "data", emu.base_url, series=["1.2.3"])


def test_not_enough_disk_space_stops_before_downloading(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    rewrite_pair(lock, lambda s: dataclasses.replace(s, bytes=4000000000000000))
    emu.reset_request_log()
    with pytest.raises(DownloadError, match="not enough free disk space"):
        fetch(lock, tmp_path / "data", emu.base_url)
    assert emu.request_count == 0 and tree(tmp_path / "data") == {}


def test_leftovers_of_a_killed_run_are_cleaned_and_replaced(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    expected = classic_paths(emu)
    good, bad = sorted(expected)[0], sorted(expected)[5]
    stray = dest / STATE_DIR / "tmp" / "series-abc"
    stray.mkdir(parents=True)
    (stray / "000001.dcm").write_bytes(b"half an image")
    (dest / good).parent.mkdir(parents=True)
    (dest / good).write_bytes(emu.corpus.image_bytes(Path(good).stem))  # placed, not recorded
    (dest / bad).parent.mkdir(parents=True, exist_ok=True)
    (dest / bad).write_bytes(b"not what the lock pins")
    report = fetch(lock, dest, emu.base_url)
    assert report.ok and tree(dest) == expected == state_paths(dest)
    assert private_files(dest) == {"state.db", "fetch.lock"}


def test_a_second_fetch_into_one_destination_is_refused(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    with Workspace(tmp_path / "data"), pytest.raises(DownloadError, match="another nbia-audit"):
        fetch(lock, tmp_path / "data", emu.base_url)


def test_links_inside_the_destination_are_not_followed(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / emu.corpus.series[0].collection).symlink_to(outside)
    with pytest.raises(DownloadError, match="is a symbolic link"):
        fetch(lock, dest, emu.base_url, workers=1)
    assert list(outside.iterdir()) == []


def test_series_the_archive_refuses_fails_without_retrying(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    hidden = emu.corpus.series[2].series_uid
    emu.hide_series(hidden)
    report = fetch(lock, tmp_path / "data", emu.base_url)
    assert_failed_exactly(report, tmp_path / "data", emu, {hidden})
    assert report.failed[0].attempts == 1
    assert "the archive refused to serve it" in report.failed[0].reasons[0]


def test_unreachable_archive_is_an_environment_error(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    client = NbiaClient("http://127.0.0.1:9/nbia-api/services", retry=RetryPolicy(attempts=1))
    with client, pytest.raises(ApiUnavailable):
        fetch_dataset(lock, tmp_path / "data", client, retry=FAST_SERIES)
    assert tree(tmp_path / "data") == {}


def hostile_zip(emu: Emulator, series_uid: str) -> bytes:
    """The series' true images and CSV, under names that try to escape."""
    images = emu.corpus.images_of(series_uid)
    names = ["../../escaped-1.dcm", "/tmp/nbia-audit-escaped-2.dcm", "ok/../../../escaped-3.dcm"]
    raw = io.BytesIO()
    rows = []
    with zipfile.ZipFile(raw, "w") as archive:
        for name, image in zip(names, images, strict=True):
            archive.writestr(name, emu.corpus.image_bytes(image.sop_uid))
            rows.append(f"{name},{image.stored_md5}\n")
        link = zipfile.ZipInfo("../link.dcm")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("md5hashes.csv", "Filename,MD5Hash\n" + "".join(rows))
    return raw.getvalue()


def test_hostile_zip_from_the_archive_cannot_write_outside(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    victim = emu.corpus.series[4].series_uid
    evil = hostile_zip(emu, victim)
    dest = tmp_path / "deep" / "data"

    def replace(path: str) -> bytes | None:
        return evil if "getImageWithMD5Hash" in path and victim in path else None

    with proxy(emu.base_url, replace) as url:
        report = fetch(lock, dest, url)
    assert_failed_exactly(report, dest, emu, {victim})
    assert "hostile or malformed ZIP" in report.failed[0].reasons[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "lock"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["data"]
    assert not Path("/tmp/nbia-audit-escaped-2.dcm").exists()


def test_read_timeouts_are_retried(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    # Only the two delayed downloads exceed a 1 s read timeout, however loaded the machine.
    emu.add_fault(Fault("latency", delay=1.5, endpoint="getImageWithMD5Hash", times=2))
    client = NbiaClient(emu.base_url, retry=FAST, timeouts=Timeouts(connect=5.0, read=1.0))
    with client:
        report = fetch_dataset(lock, tmp_path / "data", client, retry=FAST_SERIES)
    assert report.ok and tree(tmp_path / "data") == classic_paths(emu)


def test_fill_images_pins_once_and_only_its_own_series(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu, series_only=True)
    first, second = (s.series_uid for s in read_lock(lock).series[:2])
    image = LockedImage("1.2.3.4", first, "0" * 32, 10)
    with LockDatabase(database_path(lock)) as db:
        with pytest.raises(StoreError, match="belongs to another series"):
            db.fill_images(second, [image])
        with pytest.raises(StoreError, match="is not in the lock"):
            db.fill_images("9.9.9", [])
        assert db.fill_images(first, [image])
        assert not db.fill_images(first, [image])  # the same pins again: nothing to do
        with pytest.raises(StoreError, match="has other images pinned"):
            db.fill_images(first, [LockedImage("1.2.3.5", first, None, 1)])
        assert list(db.images()) == [image]
        assert [s.series_uid for s in db.series() if s.images_pinned] == [first]


def test_two_fetches_of_one_series_only_lock_agree_on_the_pins(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu, series_only=True)
    emu.add_fault(Fault("latency", delay=0.05, endpoint="getImageWithMD5Hash"))
    reports: dict[str, FetchReport] = {}

    def run(name: str) -> None:
        reports[name] = fetch(lock, tmp_path / name, emu.base_url)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in ("a", "b"):
        assert reports[name].ok and tree(tmp_path / name) == classic_paths(emu)
    filled = [s.series_uid for r in reports.values() for s in r.fetched if s.filled]
    assert sorted(filled) == sorted(s.series_uid for s in emu.corpus.series)  # each once
    assert all(s.images_pinned for s in read_lock(lock).series)


def test_a_file_the_lock_no_longer_pins_is_fetched_again(tmp_path: Path, emu: Emulator) -> None:
    # The archive replaced an image and the dataset was re-locked: the file in place is
    # exactly what the last fetch verified, but no longer what the lock pins.
    from nbia_audit.archive.view import ArchiveView
    from nbia_audit.lock.run import lock_dataset
    from tests.support.fetch import client_for as make_client

    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    fetch(lock, dest, emu.base_url)
    image = emu.corpus.images[0]
    emu.replace_image(image.sop_uid)
    with make_client(emu.base_url) as client:
        lock_dataset(lock.with_name("dataset.yaml"), ArchiveView(client), upgrade=True)
    report = fetch(lock, dest, emu.base_url)
    assert {s.series_uid for s in report.fetched} == {image.series_uid}
    assert tree(dest) == classic_paths(emu)


def test_a_link_in_place_of_a_file_is_replaced_by_the_file(tmp_path: Path, emu: Emulator) -> None:
    # A symbolic link to the right bytes is not the verified file fetch placed there.
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    fetch(lock, dest, emu.base_url)
    rel = sorted(tree(dest))[0]
    elsewhere = tmp_path / "elsewhere.dcm"
    os.replace(dest / rel, elsewhere)
    (dest / rel).symlink_to(elsewhere)
    report = fetch(lock, dest, emu.base_url)
    assert {s.series_uid for s in report.fetched} == {Path(rel).parent.name}
    assert not (dest / rel).is_symlink() and tree(dest) == classic_paths(emu)


def test_another_layout_places_the_files_again(tmp_path: Path, emu: Emulator) -> None:
    # Records of files at the classic layout's paths do not make a flat fetch done.
    lock = make_lock(tmp_path / "lock", emu)
    dest = tmp_path / "data"
    fetch(lock, dest, emu.base_url)
    report = fetch(lock, dest, emu.base_url, layout="flat")
    assert len(report.fetched) == 8 and not report.skipped
    flat = {f"{Path(rel).parent.name}/{Path(rel).name}" for rel in classic_paths(emu)}
    assert flat <= set(tree(dest))  # flat: <series UID>/<SOP UID>.dcm

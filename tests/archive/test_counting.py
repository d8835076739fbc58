"""The one request counter: every call made through it, once, against the real emulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from nbia_audit.archive import CountingArchive, open_archive
from nbia_audit.drift.run import check_drift
from nbia_audit.emulator import Emulator, Fault
from nbia_audit.errors import ApiError
from nbia_audit.lock.run import check_lock, lock_dataset


def archive_requests(emu: Emulator) -> int:
    """Requests the archive answered (or failed), token traffic aside."""
    return sum(1 for r in emu.requests if r.family != "auth")


def test_every_call_is_counted_once_and_matches_what_the_archive_saw(emulator: Emulator) -> None:
    with closing(open_archive(emulator.base_url)) as archive:
        counted = CountingArchive(archive)
        collection = counted.collections()[0]
        series = counted.series(collection=collection)[0]
        counted.series_metadata([series.series_uid])
        sops = counted.sop_instance_uids(series.series_uid)
        counted.image_md5(sops[0])
        counted.md5_hierarchy(series_uid=series.series_uid)
        counted.series_size(series.series_uid)
        counted.licenses()
        assert counted.base_url == emulator.base_url  # known, not asked: not a request
    assert counted.count == 8 == archive_requests(emulator)


def test_calls_from_many_threads_are_all_counted(emulator: Emulator) -> None:
    uids = [s.series_uid for s in emulator.corpus.series]
    with closing(open_archive(emulator.base_url)) as archive:
        counted = CountingArchive(archive)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda uid: counted.md5_hierarchy(series_uid=uid), uids * 4))
    assert counted.count == 4 * len(uids) == archive_requests(emulator)


def test_a_call_that_fails_is_still_counted(emulator: Emulator) -> None:
    emulator.add_fault(Fault("status", status=400, endpoint="getCollectionValues"))
    with closing(open_archive(emulator.base_url)) as archive:
        counted = CountingArchive(archive)
        with pytest.raises(ApiError):
            counted.collections()
    assert counted.count == 1


def write_spec(tmp_path: Path, emu: Emulator) -> Path:
    spec = tmp_path / "dataset.yaml"
    select = "".join(f"  - collection: {c.name}\n" for c in emu.corpus.collections)
    spec.write_text(f"name: n\nserver: {emu.base_url}\nselect:\n{select}", encoding="utf-8")
    return spec


def test_every_verb_reports_the_requests_the_archive_answered(
    emulator: Emulator, tmp_path: Path
) -> None:
    # lock, lock --check and drift each count through one CountingArchive: the number they
    # report is exactly what reached the archive (no retries or tokens in this run).
    spec = write_spec(tmp_path, emulator)
    with closing(open_archive(emulator.base_url)) as archive:
        emulator.reset_request_log()
        locked = lock_dataset(spec, archive)
        assert locked.written and locked.requests == archive_requests(emulator) > 0
        emulator.reset_request_log()
        checked = check_lock(spec, archive)
        assert not checked.stale and checked.requests == archive_requests(emulator) > 0
        emulator.reset_request_log()
        report = check_drift(locked.lock_path, archive)
        assert report.clean and report.facts["requests"] == archive_requests(emulator) > 0

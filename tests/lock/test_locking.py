"""`lock` against the real emulator over loopback: every selector kind, re-locks, --check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.client.transport import RetryPolicy
from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from nbia_audit.errors import ApiError, SpecError
from nbia_audit.lock.run import check_lock, lock_dataset
from nbia_audit.merkle import series_hash
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.textlock import (
    COMMIT_CRASHPOINTS,
    COMMITTED_FROM,
    database_path,
    read_text_lock,
)

SPEC = CorpusSpec(seed=11, collections=2, patients=3, studies=2, series=2, images=3)


@pytest.fixture
def archive(emu: Emulator) -> Iterator[ArchiveView]:
    fast = RetryPolicy(attempts=3, base=0.001, cap=0.01)
    with NbiaClient(emu.base_url, retry=fast) as client:
        yield ArchiveView(client)


def write_spec(tmp_path: Path, emu: Emulator, select: str, extra: str = "") -> Path:
    path = tmp_path / "dataset.yaml"
    path.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n{select}{extra}", encoding="utf-8")
    return path


def locked_uids(lock: Path) -> set[str]:
    return {s.series_uid for s in read_text_lock(lock).series}


def lock_first_collection(tmp_path: Path, emu: Emulator, archive: ArchiveView) -> tuple[str, Path]:
    """Lock the emulator's first collection; return its name and the spec's path."""
    collection = first(emu)[0]
    spec = write_spec(tmp_path, emu, f"  - collection: {collection}\n")
    lock_dataset(spec, archive)
    return collection, spec


def first(emu: Emulator) -> tuple[str, list[str]]:
    collections = sorted(c.name for c in emu.corpus.collections)
    return collections[0], collections


def test_whole_collection_pins_every_image_and_every_level(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    spec = write_spec(tmp_path, emu, f"  - collection: {collection}\n")
    result = lock_dataset(spec, archive)
    expected = {s.series_uid for s in emu.corpus.series if s.collection == collection}
    assert result.written and locked_uids(result.lock_path) == expected
    with LockDatabase(database_path(result.lock_path)) as db:
        images = list(db.images())
        assert {i.sop_uid for i in images} == {
            img.sop_uid for s in expected for img in emu.corpus.images_of(s)
        }
        for series in db.series():
            stored = [emu.corpus.image_by_sop(i.sop_uid) for i in db.images(series.series_uid)]
            assert series.series_hash == series_hash(img.stored_md5 for img in stored if img)
        nodes = list(db.nodes())
        assert {n.level for n in nodes} == {"study", "patient", "collection"}
        assert all(n.covers_whole_node and n.computed_hash == n.archive_hash for n in nodes)
        assert db.integrity_ok()
        licenses = list(db.licenses())
        served = {lic.long_name: lic for lic in emu.corpus.licenses}
        assert licenses and all(lic.name in served for lic in licenses)
        assert all(lic.commercial_use == served[lic.name].commercial_use for lic in licenses)
    assert result.problems == ()


def test_relock_of_unchanged_upstream_is_byte_identical(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    before = (tmp_path / "dataset.lock").read_bytes()
    again = lock_dataset(spec, archive)
    assert not again.written and not again.pending
    upgraded = lock_dataset(spec, archive, upgrade=True)
    assert not upgraded.written
    assert (tmp_path / "dataset.lock").read_bytes() == before


def test_filters_patients_and_exclude(tmp_path: Path, emu: Emulator, archive: ArchiveView) -> None:
    collection, _ = first(emu)
    patients = sorted({s.patient_id for s in emu.corpus.series if s.collection == collection})
    in_patient = sorted(s.series_uid for s in emu.corpus.series if s.patient_id == patients[0])
    spec = write_spec(
        tmp_path,
        emu,
        f"  - collection: {collection}\n    patients: ['{patients[0]}']\n",
        f"exclude:\n  - series: ['{in_patient[0]}']\n",
    )
    result = lock_dataset(spec, archive)
    assert locked_uids(result.lock_path) == set(in_patient[1:])


def test_series_studies_doi_manifest_cart_search_text_selectors(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    series = sorted(
        (s for s in emu.corpus.series if s.collection == collection), key=lambda s: s.series_uid
    )
    some = [series[0].series_uid, series[-1].series_uid]
    study = series[0].study_uid
    (tmp_path / "m.tcia").write_text(
        "downloadServerUrl=x\nincludeAnnotation=false\nnoOfrRetry=4\n"
        "databasketId=manifest-1.tcia\nmanifestVersion=3.0\nListOfSeriesToDownload=\n"
        + "\n".join(some)
        + "\n"
    )
    form = {"list": some, "name": "my-cart"}
    made = requests.post(
        f"{emu.base_url}/createSharedList", data=form, headers={"Authorization": "Bearer undefined"}
    )
    assert made.status_code == 200, made.text
    cases = {
        "series": (f"  - series: {some}\n", set(some)),
        "studies": (
            f"  - studies: ['{study}']\n",
            {s.series_uid for s in emu.corpus.series_of_study(study)},
        ),
        "doi": (
            f"  - doi: '{series[0].doi}'\n",
            {s.series_uid for s in emu.corpus.series if s.doi == series[0].doi},
        ),
        "manifest": ("  - manifest: m.tcia\n", set(some)),
        "cart": ("  - cart: my-cart\n", set(some)),
        "search": (
            f"  - search: {{collection: ['{collection}'], modality: {series[0].modality}}}\n",
            {
                s.series_uid
                for s in emu.corpus.series
                if s.collection == collection and s.modality == series[0].modality
            },
        ),
        "search beside collection": (
            f"  - collection: {collection}\n    search: {{modality: {series[0].modality}}}\n",
            {
                s.series_uid
                for s in emu.corpus.series
                if s.collection == collection and s.modality == series[0].modality
            },
        ),
        "text": (
            f"  - text: 'patientid:{series[0].patient_id}'\n",
            {s.series_uid for s in emu.corpus.series if s.patient_id == series[0].patient_id},
        ),
    }
    for kind, (select, expected) in cases.items():
        result = lock_dataset(write_spec(tmp_path, emu, select), archive, upgrade=True)
        assert locked_uids(result.lock_path) == expected, kind


def test_check_catches_new_removed_and_changed_series(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    assert not check_lock(spec, archive).stale

    some_series = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)
    image = emu.corpus.images_of(some_series[0])[0]
    emu.replace_image(image.sop_uid)
    check = check_lock(spec, archive)
    assert check.stale and check.changes.changed == (some_series[0],)

    emu.remove_series(some_series[1])
    added = emu.add_series(collection=collection, images=2)
    check = check_lock(spec, archive)
    assert check.changes.removed == (some_series[1],)
    assert check.changes.added == (added,)

    # Without --upgrade the pins stay and the pending changes are reported.
    kept = lock_dataset(spec, archive)
    assert not kept.written
    assert kept.pending.added == (added,) and kept.pending.changed == (some_series[0],)
    upgraded = lock_dataset(spec, archive, upgrade=True)
    assert upgraded.written and added in locked_uids(upgraded.lock_path)
    assert not check_lock(spec, archive).stale


def test_check_offline_detects_spec_change(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    others = first(emu)[1]
    assert not check_lock(spec, None).stale
    write_spec(tmp_path, emu, f"  - collection: {others[1]}\n")
    result = check_lock(spec, None)
    assert result.stale and "changed since it was locked" in result.reasons[0]


def test_short_archive_md5_is_pinned_verbatim(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    target = next(
        img
        for s in emu.corpus.series
        if s.collection == collection
        for img in emu.corpus.images_of(s.series_uid)
    )
    emu.set_stored_md5(target.sop_uid, "00" + hashlib.md5(b"x").hexdigest()[2:])
    short = emu.shorten_md5(target.sop_uid)
    assert short is not None and len(short) < 32
    spec = write_spec(tmp_path, emu, f"  - collection: {collection}\n")
    result = lock_dataset(spec, archive)
    assert [p.kind for p in result.problems] == ["short-archive-md5"]
    with LockDatabase(database_path(result.lock_path)) as db:
        stored = {i.sop_uid: i.archive_md5 for i in db.images()}
    assert stored[target.sop_uid] == short


def test_series_only_lock_pins_no_images(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    spec = write_spec(tmp_path, emu, f"  - collection: {collection}\n")
    result = lock_dataset(spec, archive, series_only=True)
    assert result.header.series_only
    with LockDatabase(database_path(result.lock_path)) as db:
        assert list(db.images()) == []
        assert not any(s.images_pinned for s in db.series())


def test_unknown_collection_names_the_closest(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    spec = write_spec(tmp_path, emu, f"  - collection: {collection.lower()}x\n")
    with pytest.raises(SpecError) as info:
        lock_dataset(spec, archive)
    assert info.value.line == 4 and f"did you mean `{collection}`" in str(info.value)
    assert not (tmp_path / "dataset.lock").exists()


def test_unknown_series_uid_is_a_spec_error(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    spec = write_spec(tmp_path, emu, "  - series: ['1.2.3.4.5.6.7']\n")
    with pytest.raises(SpecError, match="does not serve 1.2.3.4.5.6.7"):
        lock_dataset(spec, archive)


def test_archive_failure_leaves_previous_lock_untouched(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    before = (
        (tmp_path / "dataset.lock").read_bytes(),
        database_path(tmp_path / "dataset.lock").read_bytes(),
    )
    emu.add_fault(Fault("status", status=503, endpoint="getMD5HashForImage"))
    with pytest.raises(ApiError):
        lock_dataset(spec, archive, upgrade=True)
    after = (
        (tmp_path / "dataset.lock").read_bytes(),
        database_path(tmp_path / "dataset.lock").read_bytes(),
    )
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dataset.lock",
        "dataset.lock.db",
        "dataset.yaml",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("point", COMMIT_CRASHPOINTS)
def test_sigkill_during_real_lock_leaves_old_or_new_pair(
    tmp_path: Path, emu: Emulator, point: str
) -> None:
    # The real `lock` command kills itself (SIGKILL) at one named point of the commit: every
    # point is hit on every machine, however loaded, and each must leave the old pair (before
    # the text lock's rename) or the new pair (after it), never a mix.
    import os
    import signal
    import subprocess
    import sys

    from nbia_audit.crashpoints import CRASHPOINT_ENV
    from nbia_audit.store.textlock import recover_interrupted

    collection, _ = first(emu)
    spec = write_spec(tmp_path, emu, f"  - collection: {collection}\n")
    lock = tmp_path / "dataset.lock"
    command = [sys.executable, "-m", "nbia_audit", "lock", str(spec), "--upgrade", "--quiet"]
    assert subprocess.run(command, capture_output=True).returncode == 0
    old_root = read_text_lock(lock).header.root_digest
    series = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)
    emu.replace_image(emu.corpus.images_of(series[0])[0].sop_uid)  # the next lock differs
    killed = subprocess.run(
        command, capture_output=True, env={**os.environ, CRASHPOINT_ENV: point}
    )
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr.decode())
    recover_interrupted(lock)
    text = read_text_lock(lock)
    with LockDatabase(database_path(lock)) as db:
        assert db.integrity_ok()
        assert db.header() == text.header
    committed = COMMIT_CRASHPOINTS.index(point) >= COMMIT_CRASHPOINTS.index(COMMITTED_FROM)
    assert (text.header.root_digest != old_root) == committed
    leftovers = {p.name for p in tmp_path.iterdir()} - {
        "dataset.yaml",
        "dataset.lock",
        "dataset.lock.db",
    }
    assert not leftovers, leftovers
    # The pair left behind is one a later run accepts and re-locks cleanly.
    assert subprocess.run(command, capture_output=True).returncode == 0


def test_check_of_an_explicit_series_list_reports_a_hidden_series_as_stale(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    uids = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)[:2]
    spec = write_spec(tmp_path, emu, f"  - series: {uids}\n")
    lock_dataset(spec, archive)
    emu.hide_series(uids[0])
    check = check_lock(spec, archive)
    assert check.stale and check.changes.removed == (uids[0],)


def test_ctp_space_placeholder_is_missing_not_short(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, _ = first(emu)
    series = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)[0]
    target = emu.corpus.images_of(series)[0]
    emu.set_stored_md5(target.sop_uid, " ")  # what CTP stored when it had no digest
    spec = write_spec(tmp_path, emu, f"  - series: ['{series}']\n")
    result = lock_dataset(spec, archive)
    # The series hash over the verbatim " " still matches the archive's, so no mismatch.
    assert [(p.series_uid, p.kind) for p in result.problems] == [(series, "missing-archive-md5")]


def test_pins_from_another_server_are_not_kept(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    series = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)[0]
    emu.replace_image(emu.corpus.images_of(series)[0].sop_uid)
    # The same archive under another URL (a mirror): the spec changes, and so does the source.
    spec.write_text(spec.read_text().replace("127.0.0.1", "localhost"))
    with NbiaClient(emu.base_url.replace("127.0.0.1", "localhost")) as client:
        result = lock_dataset(spec, ArchiveView(client))
    assert series in result.changes.changed  # re-pinned from the new source, not kept


class _SelfContradictingArchive:
    """Answers like an archive whose study hash disagrees with its own series hashes."""

    def md5_hierarchy(self, *, series_uid=None, study_uid=None, patient_id=None, collection=None):  # type: ignore[no-untyped-def]
        return "f" * 32 if study_uid else ""

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        return []

    def image_md5(self, sop_uid: str) -> str | None:
        return None


def test_a_whole_study_the_archive_contradicts_is_a_problem_unless_pins_were_kept() -> None:
    from nbia_audit.lock.pin import hash_nodes
    from nbia_audit.models import LockedSeries

    row = LockedSeries(
        "1.1",
        "C",
        "P",
        "9.9",
        "CT",
        "",
        "",
        "",
        "",
        1,
        1,
        "a" * 32,
        "",
        "",
        "",
        "",
        "",
        False,
        True,
    )
    archive = _SelfContradictingArchive()
    nodes, problems = hash_nodes([row], archive, whole_studies={"9.9"}, fresh={"1.1"})
    assert [p.kind for p in problems] == ["study-hash-mismatch"]
    assert next(n for n in nodes if n.level == "study").covers_whole_node  # selected whole
    _, kept = hash_nodes([row], archive, whole_studies={"9.9"}, fresh=set())
    assert kept == []  # a kept (old) pin disagreeing with today's archive is drift, not this
    nodes, problems = hash_nodes([row], archive, fresh={"1.1"})
    assert problems == [] and not next(n for n in nodes if n.level == "study").covers_whole_node


def test_kept_pins_never_raise_node_problems(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    others = first(emu)[1]
    series = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)[0]
    emu.replace_image(emu.corpus.images_of(series)[0].sop_uid)
    write_spec(tmp_path, emu, f"  - collection: {collection}\n  - collection: {others[1]}\n")
    result = lock_dataset(spec, archive)  # spec changed, no upgrade: old pins kept
    assert result.written and not [p for p in result.problems if p.kind.endswith("hash-mismatch")]
    with LockDatabase(database_path(result.lock_path)) as db:
        studies = [n for n in db.nodes() if n.level == "study"]
    assert all(n.covers_whole_node for n in studies)  # whole by construction
    assert any(n.archive_hash != n.computed_hash for n in studies)  # the kept pin differs


def test_relock_and_check_report_metadata_changes(
    tmp_path: Path, emu: Emulator, archive: ArchiveView
) -> None:
    collection, spec = lock_first_collection(tmp_path, emu, archive)
    before = (tmp_path / "dataset.lock").read_bytes()
    current = {
        lic.short_name
        for lic in emu.corpus.licenses
        for s in emu.corpus.series
        if s.collection == collection and s.license_name == lic.long_name
    }
    other = sorted({lic.short_name for lic in emu.corpus.licenses} - current)[0]
    emu.set_license(collection, other)
    uids = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)
    kept = lock_dataset(spec, archive)
    assert not kept.written and (tmp_path / "dataset.lock").read_bytes() == before
    assert [uid for uid, fields in kept.pending.metadata if fields == ("license",)] == uids
    check = check_lock(spec, archive)
    assert check.stale and all("metadata changed upstream (license)" in r for r in check.reasons)
    upgraded = lock_dataset(spec, archive, upgrade=True)
    assert upgraded.written and not check_lock(spec, archive).stale

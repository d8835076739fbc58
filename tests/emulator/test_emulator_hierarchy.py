"""The emulator's getMD5Hierarchy against an independent re-implementation of protocol §1.4,
fed only with what the wire returns (md5hashes.csv values, getSeries listings)."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

import requests

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.emulator.hierarchy import MD5_CACHE_SECONDS


# -- protocol §1.4, written again here on purpose --------------------------------------------
def _md5hex(s: str) -> str:
    return hashlib.md5(s.encode("ascii")).hexdigest()


def _combine(children: list[str | None]) -> str:
    joined = "".join(sorted(c for c in children if c is not None))
    return _md5hex(joined) if joined else ""


def reference_series_hash(image_md5s: list[str | None]) -> str:
    nulls = ["null" for v in image_md5s if v is None]
    values = sorted(v for v in image_md5s if v is not None)
    joined = "".join(nulls + values)
    return _md5hex(joined) if joined else ""


# -- helpers ---------------------------------------------------------------------------------


def hierarchy(emu: Emulator, http: requests.Session, **form: str) -> str:
    response = http.post(
        f"{emu.base_url}/v4/getMD5Hierarchy",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},  # even when form is {}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def download_csv(emu: Emulator, http: requests.Session, uid: str) -> dict[str, str | None]:
    """Download v4/getImageWithMD5Hash, check every member against md5hashes.csv."""
    response = http.get(f"{emu.base_url}/v4/getImageWithMD5Hash", params={"SeriesInstanceUID": uid})
    assert response.status_code == 200
    assert "Content-Length" not in response.headers
    assert response.headers["Transfer-Encoding"] == "chunked"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert names[-1] == "md5hashes.csv" and "LICENSE" not in names
    text = archive.read("md5hashes.csv").decode("utf-8")
    assert text.startswith("Filename,MD5Hash\n") and "\r" not in text and '"' not in text
    rows = {row[0]: (row[1] or None) for row in csv.reader(io.StringIO(text)) if row}
    rows.pop("Filename")
    assert sorted(rows) == sorted(names[:-1])
    for name in names[:-1]:
        actual = hashlib.md5(archive.read(name)).hexdigest()
        stored = rows[name]
        assert stored is not None and stored.zfill(32) == actual
    return rows


def visible_series(emu: Emulator, http: requests.Session, **params: str) -> list[dict[str, object]]:
    response = http.get(f"{emu.base_url}/v4/getSeries", params=params)
    return response.json() if response.content else []


# -- tests -----------------------------------------------------------------------------------
def test_every_level_matches_the_reference_built_from_the_wire(
    emulator: Emulator, http: requests.Session
) -> None:
    series_hashes: dict[str, str] = {}
    listing = visible_series(emulator, http)
    for item in listing:
        uid = str(item["SeriesInstanceUID"])
        rows = download_csv(emulator, http, uid)
        expected = reference_series_hash(list(rows.values()))
        assert hierarchy(emulator, http, SeriesInstanceUID=uid) == expected
        series_hashes[uid] = expected

    studies: dict[str, list[str]] = {}
    patients: dict[tuple[str, str], set[str]] = {}
    for item in listing:
        study = str(item["StudyInstanceUID"])
        studies.setdefault(study, []).append(series_hashes[str(item["SeriesInstanceUID"])])
        patients.setdefault((str(item["Collection"]), str(item["PatientID"])), set()).add(study)
    study_hashes = {uid: _combine(hashes) for uid, hashes in studies.items()}
    for uid, expected in study_hashes.items():
        assert hierarchy(emulator, http, StudyInstanceUID=uid) == expected

    patient_hashes: dict[str, list[str]] = {}
    for (collection, pid), uids in patients.items():
        expected = _combine([study_hashes[u] for u in uids])
        assert hierarchy(emulator, http, Collection=collection, PatientID=pid) == expected
        patient_hashes.setdefault(collection, []).append(expected)

    emulator.run_nightly_job()
    for collection, hashes in patient_hashes.items():
        assert hierarchy(emulator, http, Collection=collection) == _combine(hashes)


def test_short_and_null_stored_values_are_hashed_verbatim(
    emulator: Emulator, http: requests.Session
) -> None:
    uid = emulator.corpus.series[0].series_uid
    images = emulator.corpus.images_of(uid)
    emulator.set_stored_md5(images[0].sop_uid, "0" + "a" * 31)
    short = emulator.shorten_md5(images[0].sop_uid)
    assert short == "a" * 31
    emulator.set_stored_md5(images[1].sop_uid, None)
    expected = reference_series_hash([short, None, images[2].stored_md5])
    assert hierarchy(emulator, http, SeriesInstanceUID=uid) == expected
    assert expected != reference_series_hash(["0" + "a" * 31, None, images[2].stored_md5])


def test_precedence_and_empty_answers(emulator: Emulator, http: requests.Session) -> None:
    series = emulator.corpus.series[0]
    series_hash = hierarchy(emulator, http, SeriesInstanceUID=series.series_uid)
    study_hash = hierarchy(emulator, http, StudyInstanceUID=series.study_uid)
    # The last applicable level wins: Study overrides Series.
    both = hierarchy(
        emulator, http, SeriesInstanceUID=series.series_uid, StudyInstanceUID=series.study_uid
    )
    assert both == study_hash != series_hash
    # PatientID needs Collection: alone it matches nothing.
    assert hierarchy(emulator, http, PatientID=series.patient_id) == ""
    assert hierarchy(emulator, http, SeriesInstanceUID="1.2.3.4") == ""
    assert hierarchy(emulator, http) == ""


def test_hidden_series_leaves_study_but_not_series_level(
    emulator: Emulator, http: requests.Session
) -> None:
    series = emulator.corpus.series[0]
    before_series = hierarchy(emulator, http, SeriesInstanceUID=series.series_uid)
    before_study = hierarchy(emulator, http, StudyInstanceUID=series.study_uid)
    emulator.hide_series(series.series_uid)
    assert hierarchy(emulator, http, SeriesInstanceUID=series.series_uid) == before_series
    assert hierarchy(emulator, http, StudyInstanceUID=series.study_uid) != before_study


def test_collection_hash_lags_until_the_nightly_job_and_the_cache(
    http: requests.Session,
) -> None:
    now = [1000.0]
    spec = CorpusSpec(seed=3, collections=1, patients=2, series=1, images=2)
    with Emulator.from_spec(spec, clock=lambda: now[0]) as emu:
        name = emu.corpus.collections[0].name
        first = hierarchy(emu, http, Collection=name)
        assert len(first) == 32
        emu.add_series(collection=name, images=2)
        assert emu.run_nightly_job() == {name: emu.corpus.collection_md5[name]}
        assert emu.run_nightly_job() == {}  # written only when it changes
        # The 100-minute memory cache still serves the old value ...
        assert hierarchy(emu, http, Collection=name) == first
        now[0] += MD5_CACHE_SECONDS + 1
        # ... until it expires.
        fresh = hierarchy(emu, http, Collection=name)
        assert fresh != first and fresh == emu.corpus.collection_md5[name]


def test_unversioned_endpoint_needs_a_token(emulator: Emulator, http: requests.Session) -> None:
    uid = emulator.corpus.series[0].series_uid
    url = f"{emulator.base_url}/getMD5Hierarchy"
    response = http.post(url, data={"SeriesInstanceUID": uid, "Series": "ignored"})
    assert response.status_code == 500
    assert response.text == "Server was not able to process your request\nnull"
    token = http.post(
        f"{emulator.root_url}/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "password"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    # The unversioned path ignores unknown fields; v4 rejects them.
    response = http.post(url, data={"SeriesInstanceUID": uid, "Series": "x"}, headers=headers)
    assert response.text == hierarchy(emulator, http, SeriesInstanceUID=uid)


def test_restricted_collection_is_left_out_of_guest_hashes(http: requests.Session) -> None:
    spec = CorpusSpec(seed=5, collections=2, patients=1, series=1, images=1, restricted=1)
    with Emulator.from_spec(spec, users={"alice": "pw"}) as emu:
        hidden = emu.corpus.collections[1]
        assert not hidden.public
        series = next(s for s in emu.corpus.series if s.collection == hidden.name)
        assert hierarchy(emu, http, StudyInstanceUID=series.study_uid) == ""
        assert hierarchy(emu, http, Collection=hidden.name) == ""  # the job uses the guest view
        token = http.post(
            f"{emu.root_url}/oauth/token",
            data={"username": "alice", "password": "pw", "grant_type": "password"},
        ).json()["access_token"]
        response = http.post(
            f"{emu.base_url}/v4/getMD5Hierarchy",
            data={"StudyInstanceUID": series.study_uid},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert len(response.text) == 32

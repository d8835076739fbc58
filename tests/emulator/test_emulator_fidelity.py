"""The emulator answers as the NBIA source does where the shared notes were wrong (issue 12).

Each test names the source lines it follows (docs/nbia-protocol-supplement.md §7 cites them).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from nbia_audit.emulator import CorpusSpec, Emulator

# One public and one restricted collection; alice sees both, the guest only the first.
SPEC = CorpusSpec(seed=11, collections=2, patients=1, studies=1, series=2, images=3, restricted=1)
USERS = {"alice": "secret"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC, users=USERS) as emulator:
        yield emulator


def token(emu: Emulator, http: requests.Session, user: str = "nbia_guest") -> dict[str, str]:
    password = USERS.get(user, "")
    body = http.post(
        f"{emu.root_url}/oauth/token",
        data={"username": user, "password": password, "grant_type": "password"},
    ).json()
    return {"Authorization": f"Bearer {body['access_token']}"}


def restricted_series(emu: Emulator) -> str:
    public = {c.name for c in emu.corpus.collections if c.public}
    return next(s.series_uid for s in emu.corpus.series if s.collection not in public)


def sops(emu: Emulator, uid: str) -> list[str]:
    return [i.sop_uid for i in emu.corpus.images_of(uid)]


def listed(response: requests.Response) -> list[str]:
    assert response.status_code == 200
    return [row["SOPInstanceUID"] for row in response.json()] if response.content else []


# -- getSOPInstanceUIDs: InstanceDAOImpl.java:93-147 ------------------------------------------
def test_v4_sop_instance_uids_ignore_visibility_authorization_and_token(
    emu: Emulator, http: requests.Session
) -> None:
    hidden = emu.corpus.series[0].series_uid
    emu.hide_series(hidden)
    private = restricted_series(emu)
    url = f"{emu.base_url}/v4/getSOPInstanceUIDs"
    # No visibility filter: a hidden series still lists its images.
    assert listed(http.get(url, params={"SeriesInstanceUID": hidden})) == sops(emu, hidden)
    # No authorization filter: the guest lists a restricted collection's images.
    assert listed(http.get(url, params={"SeriesInstanceUID": private})) == sops(emu, private)
    # The token is read and ignored: an expired one changes nothing.
    headers = token(emu, http)
    emu.expire_tokens()
    got = http.get(url, params={"SeriesInstanceUID": private}, headers=headers)
    assert listed(got) == sops(emu, private)


def test_hidden_series_images_listed_but_their_md5s_come_back_empty(
    emu: Emulator, http: requests.Session
) -> None:
    uid = emu.corpus.series[0].series_uid
    emu.hide_series(uid)
    uids = listed(
        http.get(f"{emu.base_url}/v4/getSOPInstanceUIDs", params={"SeriesInstanceUID": uid})
    )
    assert uids
    md5s = [
        http.get(f"{emu.base_url}/v4/getMD5HashForImage", params={"SOPInstanceUID": sop})
        for sop in uids
    ]
    assert [(r.status_code, r.content) for r in md5s] == [(200, b"")] * len(uids)


def test_v1_v2_sop_instance_uids_filter_by_authorization_only(
    emu: Emulator, http: requests.Session
) -> None:
    hidden = emu.corpus.series[0].series_uid
    emu.hide_series(hidden)
    private = restricted_series(emu)
    for family in ("v1", "v2"):
        url = f"{emu.base_url}/{family}/getSOPInstanceUIDs"
        headers = token(emu, http)
        # Visibility is not checked ...
        assert listed(http.get(url, params={"SeriesInstanceUID": hidden}, headers=headers)) == (
            sops(emu, hidden)
        )
        # ... authorization is: the guest sees nothing of a restricted collection.
        assert listed(http.get(url, params={"SeriesInstanceUID": private}, headers=headers)) == []
    alice = token(emu, http, "alice")
    v2 = http.get(
        f"{emu.base_url}/v2/getSOPInstanceUIDs",
        params={"SeriesInstanceUID": private},
        headers=alice,
    )
    assert listed(v2) == sops(emu, private)


# -- getCollectionDescriptions: CollectionDescDAOImpl.java:106-110,169 ------------------------
def test_v4_collection_descriptions_bad_token_is_500_and_name_is_exact(
    emu: Emulator, http: requests.Session
) -> None:
    url = f"{emu.base_url}/v4/getCollectionDescriptions"
    name = emu.corpus.collections[0].name
    exact = http.get(url, params={"collectionName": name}).json()
    assert [d["collectionName"] for d in exact] == [name]
    assert http.get(url, params={"collectionName": name.lower()}).json() == []
    headers = token(emu, http)
    emu.expire_tokens()
    failed = http.get(url, headers=headers)
    assert failed.status_code == 500
    assert failed.text == "Server was not able to process your request\nnull"


# -- release dates: GeneralSeriesDAOImpl.java:784,833; PatientDAOImpl.java:338 -----------------
def test_release_date_filters_compare_with_midnight(emu: Emulator, http: requests.Session) -> None:
    series = emu.corpus.series[0]
    emu.set_release_date(series.series_uid, "2031-03-04T15:30:00")
    base = emu.base_url
    updated = {
        "v4": http.get(f"{base}/v4/getUpdatedSeries", params={"fromDate": "03-04-2031"}),
        "v1": http.get(f"{base}/v1/getUpdatedSeries", params={"fromDate": "04/03/2031"}),
    }
    for response in updated.values():
        assert [r["SeriesInstanceUID"] for r in response.json()] == [series.series_uid]
    patients = http.get(
        f"{base}/v1/NewPatientsInCollection",
        params={"Collection": series.collection, "Date": "2031/03/04"},
    )
    assert [p["PatientId"] for p in patients.json()] == [series.patient_id]
    studies = http.get(
        f"{base}/v1/NewStudiesInPatientCollection",
        params={"Collection": series.collection, "Date": "2031/03/04"},
    )
    assert [s["StudyInstanceUID"] for s in studies.json()] == [series.study_uid]
    # A release exactly at midnight is not "after" midnight for getUpdatedSeries ...
    emu.set_release_date(series.series_uid, "2031-03-04T00:00:00")
    v4 = http.get(f"{base}/v4/getUpdatedSeries", params={"fromDate": "03-04-2031"})
    assert v4.content == b""
    # ... but v4's NewPatientsInCollection uses >= and keeps it.
    v4_patients = http.get(
        f"{base}/v4/NewPatientsInCollection",
        params={"Collection": series.collection, "fromDate": "03-04-2031"},
    )
    assert [p["PatientId"] for p in v4_patients.json()] == [series.patient_id]


# -- DOI: MySQL's default collation (GeneralSeriesDAOImpl.java:2055) --------------------------
def test_doi_matching_ignores_case(emu: Emulator, http: requests.Session) -> None:
    collection = emu.corpus.collections[0]
    response = http.post(
        f"{emu.base_url}/v4/getCollectionOrSeriesForDOI", data={"DOI": collection.doi.upper()}
    )
    assert {item["collection"] for item in response.json()} == {collection.name}


# -- oauth/token: KeycloakGetToken.java:46-61 --------------------------------------------------
def test_grant_type_is_case_insensitive(emu: Emulator, http: requests.Session) -> None:
    response = http.post(
        f"{emu.root_url}/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "Password"},
    )
    assert response.status_code == 200 and response.json()["access_token"]
    assert http.post(f"{emu.root_url}/oauth/token", data={"grant_type": "none"}).status_code == 500


def test_refresh_forwards_client_id_to_keycloak(emu: Emulator, http: requests.Session) -> None:
    url = f"{emu.root_url}/oauth/token"
    login = http.post(
        url, data={"username": "alice", "password": "secret", "grant_type": "password"}
    ).json()
    form = {"grant_type": "REFRESH_TOKEN", "refresh_token": login["refresh_token"]}
    # Without a client_id (or with another client's), Keycloak refuses the refresh ...
    missing = http.post(url, data=form)
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_client"
    foreign = http.post(url, data={**form, "client_id": "NBIA-other"})
    assert foreign.status_code == 401
    # ... and the refresh token is still good for the client it was issued to.
    ok = http.post(url, data={**form, "client_id": "nbia"})
    assert ok.status_code == 200 and ok.json()["access_token"] != login["access_token"]


# -- Jersey and the catch-all mapper (UncaughtException.java:23) -------------------------------
GENERIC = "Server was not able to process your request\n"


def test_unknown_paths_and_wrong_methods_are_500s(emu: Emulator, http: requests.Session) -> None:
    unknown = http.get(f"{emu.base_url}/v4/getNothingAtAll")
    assert (unknown.status_code, unknown.text) == (500, GENERIC + "HTTP 404 Not Found")
    unversioned = http.get(f"{emu.root_url}/nothing")  # Jersey also serves /nbia-api/*
    assert unversioned.status_code == 500
    wrong = http.get(f"{emu.base_url}/v4/getMD5Hierarchy")
    assert (wrong.status_code, wrong.text) == (500, GENERIC + "HTTP 405 Method Not Allowed")
    # Our own control API keeps its plain answers.
    assert http.get(emu.root_url.removesuffix("/nbia-api") + "/_emulator/state").status_code == 200


def test_form_resources_refuse_a_body_that_is_not_a_form(
    emu: Emulator, http: requests.Session
) -> None:
    uid = emu.corpus.series[0].series_uid
    url = f"{emu.base_url}/v4/getMD5Hierarchy"
    bare = http.post(url)  # no Content-Type, empty body
    assert bare.status_code == 500
    assert bare.text.startswith(GENERIC + "The @FormParam is utilized")
    as_json = http.post(url, json={"SeriesInstanceUID": uid})
    assert as_json.status_code == 500
    form = http.post(url, data={"SeriesInstanceUID": uid})
    assert form.status_code == 200 and len(form.text) == 32
    # A MultivaluedMap entity finds no reader instead.
    search = http.post(f"{emu.base_url}/v4/getSimpleSearch")
    assert (search.status_code, search.text) == (500, GENERIC + "HTTP 415 Unsupported Media Type")


# -- v4 getImage ZIPs: V4_getImage.java:115-162, ImageDAO2Impl.java:448-508 -------------------
def zip_names(response: requests.Response) -> list[str]:
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(response.content)).namelist()


def test_null_stored_md5_ends_the_v4_zip_at_that_image(
    emu: Emulator, http: requests.Session
) -> None:
    uid = emu.corpus.series[0].series_uid
    images = emu.corpus.images_of(uid)
    emu.set_stored_md5(images[1].sop_uid, None)
    url = f"{emu.base_url}/v4/getImage"
    cut = http.get(url, params={"SeriesInstanceUID": uid, "IncludeMD5": "yes"})
    assert zip_names(cut) == ["LICENSE", "00000001.dcm"]  # no second image, no CSV
    # The NewFileNames branch reads the digest without dereferencing it: every image is there.
    renamed = http.get(url, params={"SeriesInstanceUID": uid, "NewFileNames": "yes"})
    assert len(zip_names(renamed)) == 1 + len(images)
    # v1/v2 never read the digest.
    v2 = http.get(
        f"{emu.base_url}/v2/getImage", params={"SeriesInstanceUID": uid}, headers=token(emu, http)
    )
    assert len(zip_names(v2)) == 1 + len(images)
    # V4_getImageWithMD5Hash puts the NULL into its CSV as it is: every image, then the CSV.
    hashed = http.get(f"{emu.base_url}/v4/getImageWithMD5Hash", params={"SeriesInstanceUID": uid})
    assert len(zip_names(hashed)) == len(images) + 1 and zip_names(hashed)[-1] == "md5hashes.csv"


def test_license_entry_cases(http: requests.Session) -> None:
    spec = CorpusSpec(seed=3, collections=1, patients=1, series=1, images=2)
    with Emulator.from_spec(spec, user_agreement="Be nice.") as emu:
        series = emu.corpus.series[0]
        url = f"{emu.base_url}/v4/getImage"
        response = http.get(url, params={"SeriesInstanceUID": series.series_uid})
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        text = archive.read("LICENSE").decode()
        assert text.startswith(f"License Information. The {series.collection} collection")
        assert text.endswith("license.\nBe nice.")  # the agreement file follows a newline
    with Emulator.from_spec(spec) as emu:
        series = emu.corpus.series[0]
        emu.corpus.put_series(replace(series, license_name="No Such License"))
        params = {"SeriesInstanceUID": series.series_uid}
        # No license row and no agreement: null content. Inside the try, the ZIP holds an
        # empty LICENSE and nothing else ...
        for family in ("v1", "v4"):
            got = http.get(f"{emu.base_url}/{family}/getImage", params=params)
            archive = zipfile.ZipFile(io.BytesIO(got.content))
            assert archive.namelist() == ["LICENSE"] and archive.read("LICENSE") == b""
        # ... outside it (v4 NewFileNames), the exception reaches the mapper.
        renamed = http.get(f"{emu.base_url}/v4/getImage", params={**params, "NewFileNames": "yes"})
        assert renamed.status_code == 500


# -- server-side caches: SearchUtil.java:335-356, cache.ccf; MD5Cache.java ---------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SEARCH = {
    "criteriaType0": "CollectionCriteria",
    "sortField": "subject",
    "sortDirection": "ascending",
    "start": "0",
    "size": "100",
}


def searched_series(
    http: requests.Session, emu: Emulator, collection: str, headers: dict[str, str] | None = None
) -> set[int]:
    body = http.post(
        f"{emu.base_url}/v4/getSimpleSearch",
        data={**SEARCH, "value0": collection},
        headers=headers or {},
    ).json()
    return {
        sid
        for patient in body["resultSet"]
        for study in patient["studyIdentifiers"]
        for sid in study["seriesIdentifiers"]
    }


def test_simple_search_results_are_cached_per_user_and_criteria(http: requests.Session) -> None:
    clock = Clock()
    spec = CorpusSpec(seed=5, collections=1, patients=1, series=2, images=1)
    with Emulator.from_spec(spec, clock=clock, search_cache_life=600.0, users=USERS) as emu:
        collection = emu.corpus.collections[0].name
        first = searched_series(http, emu, collection)
        assert len(first) == 2
        emu.hide_series(emu.corpus.series[0].series_uid)
        clock.now += 599
        assert searched_series(http, emu, collection) == first  # stale: served from the cache
        # Another user (another key) sees the archive as it is.
        assert len(searched_series(http, emu, collection, token(emu, http, "alice"))) == 1
        clock.now += 1
        assert len(searched_series(http, emu, collection)) == 1  # the entry lived 600 s


def test_simple_search_cache_defaults_to_six_hours_and_idles_out(http: requests.Session) -> None:
    clock = Clock()
    spec = CorpusSpec(seed=5, collections=1, patients=1, series=2, images=1)
    with Emulator.from_spec(spec, clock=clock) as emu:
        collection = emu.corpus.collections[0].name
        first = searched_series(http, emu, collection)
        emu.hide_series(emu.corpus.series[0].series_uid)
        for _ in range(12):  # read every 29 minutes: never idle, but at most 6 h old
            clock.now += 29 * 60
            assert searched_series(http, emu, collection) == first
        clock.now += 21600 - 12 * 29 * 60
        assert len(searched_series(http, emu, collection)) == 1
    with Emulator.from_spec(spec, clock=clock) as emu:
        collection = emu.corpus.collections[0].name
        first = searched_series(http, emu, collection)
        emu.hide_series(emu.corpus.series[0].series_uid)
        clock.now += 1800  # 30 minutes without a read
        assert len(searched_series(http, emu, collection)) == 1


def test_collection_hash_cache_lifetime_is_settable(http: requests.Session) -> None:
    clock = Clock()
    spec = CorpusSpec(seed=5, collections=1, patients=1, series=1, images=2)
    with Emulator.from_spec(spec, clock=clock, md5_cache_life=60.0) as emu:
        collection = emu.corpus.collections[0].name
        url = f"{emu.base_url}/v4/getMD5Hierarchy"
        before = http.post(url, data={"Collection": collection}).text
        emu.replace_image(emu.corpus.images_of(emu.corpus.series[0].series_uid)[0].sop_uid)
        emu.run_nightly_job()
        clock.now += 59
        assert http.post(url, data={"Collection": collection}).text == before
        clock.now += 1
        assert http.post(url, data={"Collection": collection}).text not in ("", before)

"""The emulator answers as the NBIA source does where the shared notes were wrong (issue 12).

Each test names the source lines it follows (docs/nbia-protocol-supplement.md §12 cites them).
"""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


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

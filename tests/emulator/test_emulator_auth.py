"""Tokens, expiry and the per-endpoint consequences of a bad token (protocol §4)."""

from __future__ import annotations

import requests

from nbia_audit.emulator import CorpusSpec, Emulator
from tests.support.client import FakeClock

NPE_BODY = "Server was not able to process your request\nnull"
KEYCLOAK_KEYS = [
    "access_token", "expires_in", "refresh_expires_in", "refresh_token", "token_type",
    "id_token", "not-before-policy", "session_state", "scope",
]  # fmt: skip


def login(
    emu: Emulator, http: requests.Session, user: str = "nbia_guest", password: str = ""
) -> dict:
    response = http.post(
        f"{emu.root_url}/oauth/token",
        data={
            "username": user,
            "password": password,
            "grant_type": "password",
            "client_id": "NBIA",
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_password_grant_has_keycloak_shape(emulator: Emulator, http: requests.Session) -> None:
    body = login(emulator, http, "nbia_guest", "anything at all")
    assert list(body) == KEYCLOAK_KEYS
    assert body["token_type"] == "Bearer" and body["expires_in"] == 7200
    assert login(emulator, http, "alice", "secret")["refresh_expires_in"] == 36000
    # The same endpoint under /services, as the servlet is mapped twice.
    response = http.post(
        f"{emulator.base_url}/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "password"},
    )
    assert response.status_code == 200


def test_bad_credentials_and_grants(emulator: Emulator, http: requests.Session) -> None:
    url = f"{emulator.root_url}/oauth/token"
    wrong = http.post(url, data={"username": "alice", "password": "nope", "grant_type": "password"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"
    assert "nope" not in str(emulator.requests[-1])  # credentials never reach the log
    assert (
        http.post(url, data={"username": "x", "grant_type": "client_credentials"}).status_code
        == 500
    )
    assert http.post(url, data={"username": "x"}).status_code == 500


def test_refresh_and_logout(emulator: Emulator, http: requests.Session) -> None:
    first = login(emulator, http, "alice", "secret")
    url = f"{emulator.root_url}/oauth/token"
    refreshed = http.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "nbia",
        },
    ).json()
    assert refreshed["access_token"] != first["access_token"]
    # The old pair is retired.
    reused = http.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "nbia",
        },
    )
    assert reused.status_code == 400
    logout = f"{emulator.root_url}/logout"
    assert http.get(logout, headers=bearer(refreshed["access_token"])).status_code == 500
    assert http.post(logout).status_code == 500
    assert http.post(logout, headers=bearer(refreshed["access_token"])).status_code == 204
    hash_url = f"{emulator.base_url}/v4/getMD5Hierarchy"
    uid = emulator.corpus.series[0].series_uid
    revoked = http.post(
        hash_url, data={"SeriesInstanceUID": uid}, headers=bearer(refreshed["access_token"])
    )
    assert revoked.status_code == 401 and revoked.content == b""


def test_tokens_really_expire(http: requests.Session) -> None:
    spec = CorpusSpec(seed=1, collections=1, patients=1, series=1, images=1)
    clock = FakeClock()  # expiry by a clock the test moves: no sleep, no race with load
    with Emulator.from_spec(spec, token_ttl=0.3, refresh_ttl=5.0, clock=clock) as emu:
        body = login(emu, http)
        assert body["expires_in"] == 0
        url = f"{emu.base_url}/v4/getSeries"
        clock.advance(0.29)
        assert http.get(url, headers=bearer(body["access_token"])).content
        clock.advance(0.02)
        expired = http.get(url, headers=bearer(body["access_token"]))
        assert expired.status_code == 200 and expired.content == b""
        refreshed = http.post(
            f"{emu.root_url}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": "nbia",
            },
        )
        assert http.get(url, headers=bearer(refreshed.json()["access_token"])).content


def test_bad_token_by_endpoint_kind(emulator: Emulator, http: requests.Session) -> None:
    """401 where getUserName() is direct, 200-empty where the failure is swallowed (§4.3)."""
    token = login(emulator, http)["access_token"]
    emulator.expire_tokens()
    headers = bearer(token)
    base = emulator.base_url
    series = emulator.corpus.series[0]
    uid = series.series_uid
    unauthorized = [
        http.get(f"{base}/v4/getImage", params={"SeriesInstanceUID": uid}, headers=headers),
        http.get(
            f"{base}/v4/getImageWithMD5Hash", params={"SeriesInstanceUID": uid}, headers=headers
        ),
        http.post(f"{base}/v4/getMD5Hierarchy", data={"SeriesInstanceUID": uid}, headers=headers),
        http.get(f"{base}/v4/getCollectionValues", headers=headers),
        http.get(f"{base}/v4/getModalityValuesAndCounts", headers=headers),
        http.post(f"{base}/v4/getSeriesMetadata", data={"list": uid}, headers=headers),
    ]
    assert [(r.status_code, r.content) for r in unauthorized] == [(401, b"")] * len(unauthorized)
    swallowed = [
        http.get(f"{base}/v4/getSeries", headers=headers),
        http.get(f"{base}/v4/getPatient", headers=headers),
        http.get(
            f"{base}/v2/getSOPInstanceUIDs", params={"SeriesInstanceUID": uid}, headers=headers
        ),
        http.get(f"{base}/v2/getSeries", headers=headers),
        http.get(f"{base}/v4/getBodyPartValues", headers=headers),
    ]
    assert [(r.status_code, r.content) for r in swallowed] == [(200, b"")] * len(swallowed)
    # v1 never looks at the header; v4 getSeriesSize only asks for public collections.
    assert http.get(f"{base}/v1/getSeries", headers=headers).content
    size = http.get(f"{base}/v4/getSeriesSize", params={"SeriesInstanceUID": uid}, headers=headers)
    assert size.json()[0]["ObjectCount"] == 3


def test_missing_header_by_family(emulator: Emulator, http: requests.Session) -> None:
    base = emulator.base_url
    uid = emulator.corpus.series[0].series_uid
    # v4: guest.
    assert http.get(f"{base}/v4/getImage", params={"SeriesInstanceUID": uid}).status_code == 200
    assert http.get(f"{base}/v4/getSeries", headers={"Authorization": "Bearer undefined"}).content
    # The old getData (v2, Advanced): an NPE where the user is read directly ...
    for response in (
        http.get(f"{base}/v2/getImage", params={"SeriesInstanceUID": uid}),
        http.get(f"{base}/v2/getM5HashForImage", params={"SOPInstanceUid": "1.2"}),
        http.get(f"{base}/getCollectionDescriptions"),
    ):
        assert response.status_code == 500 and response.text == NPE_BODY
        assert response.headers["Content-Type"] == "text/plain"
    # ... and an empty 200 where the lookup is wrapped in try/catch.
    response = http.get(f"{base}/v2/getSeries")
    assert response.status_code == 200 and response.content == b""
    # "Bearer undefined" means guest on the old path too.
    ok = http.get(
        f"{base}/v2/getImage",
        params={"SeriesInstanceUID": uid},
        headers={"Authorization": "Bearer undefined"},
    )
    assert ok.status_code == 200


def test_restricted_collection_needs_a_named_user(http: requests.Session) -> None:
    spec = CorpusSpec(seed=2, collections=2, patients=1, series=1, images=2, restricted=1)
    with Emulator.from_spec(spec, users={"alice": "pw"}) as emu:
        hidden = emu.corpus.collections[1].name
        uid = next(s.series_uid for s in emu.corpus.series if s.collection == hidden)
        guest_list = http.get(f"{emu.base_url}/v4/getCollectionValues").json()
        assert hidden not in {c["Collection"] for c in guest_list}
        denied = http.get(f"{emu.base_url}/v4/getImage", params={"SeriesInstanceUID": uid})
        assert denied.status_code == 400 and uid in denied.text
        headers = bearer(login(emu, http, "alice", "pw")["access_token"])
        named = http.get(f"{emu.base_url}/v4/getCollectionValues", headers=headers).json()
        assert hidden in {c["Collection"] for c in named}
        ok = http.get(
            f"{emu.base_url}/v4/getImage", params={"SeriesInstanceUID": uid}, headers=headers
        )
        assert ok.status_code == 200

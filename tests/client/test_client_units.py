"""Pure tests of the client's small parts: servers, retry policy, credentials, search forms."""

from __future__ import annotations

import random
from datetime import date

import pytest

import nbia_audit.client as client_package
from nbia_audit.client import (
    Credentials,
    NbiaClient,
    RetryPolicy,
    SearchCriterion,
    Timeouts,
    credentials_from_env,
    resolve_server,
)
from nbia_audit.client.records import TokenInfo
from nbia_audit.client.search import simple_search_form
from nbia_audit.client.transport import parse_retry_after

# -- servers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "services", "token", "logout"),
    [
        (
            "public",
            "https://services.cancerimagingarchive.net/nbia-api/services",
            "https://services.cancerimagingarchive.net/nbia-api/oauth/token",
            "https://services.cancerimagingarchive.net/nbia-api/logout",
        ),
        (
            " NLST ",
            "https://nlst.cancerimagingarchive.net/nbia-api/services",
            "https://nlst.cancerimagingarchive.net/nbia-api/oauth/token",
            "https://nlst.cancerimagingarchive.net/nbia-api/logout",
        ),
        (
            "https://nbia.example.org/nbia-api/",
            "https://nbia.example.org/nbia-api/services",
            "https://nbia.example.org/nbia-api/oauth/token",
            "https://nbia.example.org/nbia-api/logout",
        ),
        (
            "http://127.0.0.1:8080/nbia-api/services/",
            "http://127.0.0.1:8080/nbia-api/services",
            "http://127.0.0.1:8080/nbia-api/oauth/token",
            "http://127.0.0.1:8080/nbia-api/logout",
        ),
    ],
)
def test_server_aliases_and_urls(server: str, services: str, token: str, logout: str) -> None:
    urls = resolve_server(server)
    assert (urls.services, urls.token, urls.logout) == (services, token, logout)
    assert urls.endpoint("v4/getSeries") == services + "/v4/getSeries"


@pytest.mark.parametrize("server", ["prod", "ftp://host/nbia-api", "https://", "https://h/x?y=1"])
def test_unknown_servers_are_refused(server: str) -> None:
    with pytest.raises(ValueError, match="server"):
        resolve_server(server)


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError) as caught:
        resolve_server("https://alice:s3cret-pw@nbia.example.org/nbia-api")
    assert "s3cret-pw" not in str(caught.value)


def test_client_rejects_unknown_families_and_sizes() -> None:
    with pytest.raises(ValueError, match="family"):
        NbiaClient("public", api="v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        NbiaClient("public", metadata_batch_size=0)


def test_client_repr_names_server_family_and_user_only() -> None:
    client = NbiaClient("nlst", api="v2", credentials=Credentials("alice", "s3cret-pw"))
    assert repr(client) == (
        "NbiaClient(server='https://nlst.cancerimagingarchive.net/nbia-api/services', "
        "api='v2', user='alice')"
    )
    assert client.username == "alice" and client.api == "v2"
    client.close()  # never logged in: nothing is sent


# -- retry policy ----------------------------------------------------------------------------------


def test_full_jitter_backoff_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=6, base=0.5, cap=4.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole interval is used, not just its ceiling


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base=-1)
    assert Timeouts(connect=2, read=5).as_tuple() == (2, 5)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now) == expected


# -- credentials -----------------------------------------------------------------------------------


def test_credentials_and_tokens_hide_their_secrets() -> None:
    creds = Credentials("alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(creds) and "s3cret-pw" not in str(creds)
    assert repr(creds) == "Credentials(username='alice')"
    assert Credentials.guest() == Credentials("nbia_guest", "") and Credentials.guest().is_guest
    token = TokenInfo("acc-secret", 0.0, 10.0, refresh_token="ref-secret")
    assert "secret" not in repr(token)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"NBIA_USER": "alice", "NBIA_PASSWORD": "pw"}, Credentials("alice", "pw")),
        ({"NBIA_USER": "alice"}, None),  # the CLI prompts for the password
        ({"NBIA_USER": "nbia_guest"}, Credentials.guest()),
        ({"NBIA_USER": " ", "NBIA_PASSWORD": "pw"}, None),
    ],
)
def test_credentials_from_env(env: dict[str, str], expected: Credentials | None) -> None:
    assert credentials_from_env(env) == expected


# -- simple search form ----------------------------------------------------------------------------


def test_simple_search_form_numbers_criteria_and_pages_every_patient() -> None:
    criteria = [
        SearchCriterion.collection("4D-Lung"),
        SearchCriterion.modality("CT"),
        SearchCriterion.released_between(date(2020, 1, 2), date(2021, 3, 4)),
    ]
    form = simple_search_form(criteria, v4=True)
    assert form == {
        "criteriaType0": "CollectionCriteria", "value0": "4D-Lung",
        "criteriaType1": "ImageModalityCriteria", "value1": "CT",
        "criteriaType2": "DateRangeCriteria", "fromDate2": "01-02-2020", "toDate2": "03-04-2021",
        "sortField": "subject", "sortDirection": "ascending", "start": "0", "size": "1000000",
    }  # fmt: skip
    unversioned = simple_search_form(criteria, v4=False)
    assert (unversioned["fromDate2"], unversioned["toDate2"]) == ("02/01/2020", "04/03/2021")


@pytest.mark.parametrize(
    "criteria",
    [[], [SearchCriterion("CollectionCriteria")], [SearchCriterion("DateRangeCriteria")]],
)
def test_incomplete_searches_are_refused(criteria: list[SearchCriterion]) -> None:
    with pytest.raises(ValueError):
        simple_search_form(criteria, v4=True)


def test_public_names_are_exported() -> None:
    public = {name for name in dir(client_package) if not name.startswith("_")}
    modules = {"api", "auth", "core", "download", "hashes", "manifests", "parse", "queries",
               "records", "redact", "search", "servers", "shapes", "transport"}  # fmt: skip
    assert sorted(client_package.__all__) == sorted(public - modules - {"annotations"})

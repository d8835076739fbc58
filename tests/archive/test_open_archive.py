"""``open_archive``: one way from a URL, a server name, a client or an Archive to an Archive."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from nbia_audit.archive import ArchiveView, CountingArchive, open_archive
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.servers import SERVER_ALIASES
from nbia_audit.drift.run import check_drift
from nbia_audit.emulator import Emulator
from nbia_audit.errors import AuthError
from nbia_audit.fetch.run import fetch_dataset
from nbia_audit.lock.run import lock_dataset


def test_a_url_opens_the_archive_there(emulator: Emulator) -> None:
    with closing(open_archive(emulator.base_url)) as archive:
        assert archive.base_url == emulator.base_url
        assert sorted(archive.collections()) == sorted(c.name for c in emulator.corpus.collections)
    assert {r.family for r in emulator.requests} == {"v4"}  # the default family


def test_a_server_name_opens_the_server_it_names_without_asking_anything() -> None:
    # Nothing is sent until the first call (the test would fail reaching beyond loopback).
    with closing(open_archive("nlst")) as archive:
        assert archive.base_url == SERVER_ALIASES["nlst"]


def test_the_api_family_is_the_one_asked_for(emulator: Emulator) -> None:
    with closing(open_archive(emulator.base_url, api="v1")) as archive:
        archive.collections()
    assert {r.family for r in emulator.requests} == {"v1"}


def test_credentials_are_used_and_the_session_ends_on_close(emulator: Emulator) -> None:
    archive = open_archive(emulator.base_url, credentials=Credentials("alice", "secret"))
    archive.collections()
    archive.close()
    endpoints = [r.endpoint for r in emulator.requests]
    assert endpoints[0] == "token" and endpoints[-1] == "logout"
    wrong = open_archive(emulator.base_url, credentials=Credentials("alice", "wrong"))
    with closing(wrong), pytest.raises(AuthError):
        wrong.collections()


def test_a_client_is_viewed_as_it_is(emulator: Emulator) -> None:
    with NbiaClient(emulator.base_url) as client:
        archive = open_archive(client)
        assert isinstance(archive, ArchiveView) and archive.client is client
        assert archive.collections()


def test_an_archive_is_returned_unchanged(emulator: Emulator) -> None:
    with closing(open_archive(emulator.base_url)) as inner:
        counted = CountingArchive(inner)
        assert open_archive(counted) is counted


@pytest.mark.parametrize("option", ["api", "credentials"])
def test_options_that_cannot_apply_are_refused_not_ignored(
    emulator: Emulator, option: str
) -> None:
    options = {"api": "v1"} if option == "api" else {"credentials": Credentials("alice", "x")}
    with NbiaClient(emulator.base_url) as client:
        with pytest.raises(ValueError, match="apply only when the archive is opened by"):
            open_archive(client, **options)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="apply only"):
            open_archive(ArchiveView(client), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("server", "says"),
    [
        ("nowhere", "unknown NBIA server 'nowhere'"),
        ("https://bob:pw@example.org/nbia-api/services", "must not contain a user name"),
    ],
)
def test_a_bad_server_is_a_one_line_error(server: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        open_archive(server)
    assert "\n" not in str(caught.value) and "pw" not in str(caught.value)


def test_every_verb_takes_the_same_archive(emulator: Emulator, tmp_path: Path) -> None:
    spec = tmp_path / "dataset.yaml"
    name = emulator.corpus.collections[0].name
    spec.write_text(f"name: s\nserver: {emulator.base_url}\nselect:\n  - collection: {name}\n")
    with closing(open_archive(emulator.base_url)) as archive:
        lock = lock_dataset(spec, archive).lock_path
        assert fetch_dataset(lock, tmp_path / "data", archive).ok
        assert check_drift(lock, archive).clean


def test_drift_closes_an_archive_it_opened_itself(emulator: Emulator, tmp_path: Path) -> None:
    spec = tmp_path / "dataset.yaml"
    name = emulator.corpus.collections[0].name
    spec.write_text(f"name: s\nserver: {emulator.base_url}\nselect:\n  - collection: {name}\n")
    with closing(open_archive(emulator.base_url)) as archive:
        lock = lock_dataset(spec, archive).lock_path
    alice = Credentials("alice", "secret")
    report = check_drift(lock, lambda header: open_archive(header.base_url, credentials=alice))
    assert report.clean
    assert emulator.requests[-1].endpoint == "logout"

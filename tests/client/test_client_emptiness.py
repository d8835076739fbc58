"""An empty answer sent with a token is proven, not assumed (issue 12 #1).

NBIA's list endpoints answer "nothing visible" when they swallowed a rejected token: an empty
body on some, ``[]`` on others (``getCollectionOrSeriesForDOI``). The client proves the token
with ``v4/getMD5Hierarchy`` before it believes either, and that probe must be a well-formed
``application/x-www-form-urlencoded`` POST: the real server's Jersey form injection fails on
anything else, which NBIA's catch-all mapper turns into HTTP 500. The emulator does not model
that Jersey detail, so a small loopback server in this file does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbia_audit.client.core import looks_empty
from nbia_audit.emulator import Emulator, Fault
from nbia_audit.errors import ApiServerError
from tests.support.client import ALICE, calls, make_client, running_emulator


class _JerseyLike(BaseHTTPRequestHandler):
    """Token endpoint, a list endpoint with no rows, and a Jersey-strict getMD5Hierarchy."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        return

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.server.seen.append((self.path, kind, body))
        if self.path.endswith("/oauth/token"):
            token = {"access_token": "good-token-0123456789", "expires_in": 3600}
            self._reply(200, json.dumps(token).encode(), "application/json")
        elif self.path.endswith("/v4/getMD5Hierarchy"):
            if kind != "application/x-www-form-urlencoded":
                self._reply(500, b"Server was not able to process your request")
            elif self.headers.get("Authorization") != "Bearer good-token-0123456789":
                self._reply(401)
            else:
                self._reply(200, b"")
        else:  # logout
            self._reply(200)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, "", b""))
        self._reply(200, b"", "application/json")  # getSeries: truly no rows


class _Server(ThreadingHTTPServer):
    seen: list[tuple[str, str, bytes]]


@pytest.fixture
def jersey() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _JerseyLike)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    yield from running_emulator()


def test_the_token_probe_is_a_well_formed_form_post(jersey: _Server) -> None:
    from nbia_audit.client import NbiaClient

    url = f"http://127.0.0.1:{jersey.server_address[1]}/nbia-api/services"
    with NbiaClient(url, credentials=ALICE, sleep=lambda _s: None) as client:
        assert client.series(collection="Empty") == []
    probes = [(kind, body) for path, kind, body in jersey.seen if "getMD5Hierarchy" in path]
    assert probes == [("application/x-www-form-urlencoded", b"SeriesInstanceUID=")]


def test_an_empty_json_list_with_an_expired_token_is_asked_again(emu: Emulator) -> None:
    client = make_client(emu, credentials=ALICE)
    doi = next(s.doi for s in client.series() if s.doi)
    before = client.collection_or_series_for_doi(doi, series_level=True)
    assert before, "the corpus cites this DOI"
    emu.expire_tokens()
    # The emulator, like NBIA's DAO, answers [] for a rejected token on this endpoint.
    after = client.collection_or_series_for_doi(doi, series_level=True)
    assert after == before
    probes = calls(emu, "getMD5Hierarchy")
    assert [p.status for p in probes] == [401]  # the stale token, caught; the renewed one got rows


def test_an_empty_json_list_with_a_good_token_is_believed_after_one_probe(emu: Emulator) -> None:
    client = make_client(emu, credentials=ALICE)
    assert client.collection_or_series_for_doi("https://doi.org/10.0/none", series_level=True) == []
    assert [p.status for p in calls(emu, "getMD5Hierarchy")] == [200]


def test_empty_answers_without_a_token_are_not_probed(emu: Emulator) -> None:
    client = make_client(emu)
    assert client.collection_or_series_for_doi("https://doi.org/10.0/none") == []
    assert calls(emu, "getMD5Hierarchy") == []


@pytest.mark.parametrize(
    ("body", "empty"),
    [
        (b"", True),
        (b"  \n", True),
        (b"[]", True),
        (b" [ \n ] ", True),
        (b"null", True),
        (b"[{}]", False),
        (b'[{"a": 1}]', False),
        (b"0", False),
        (b"d41d8cd98f00b204e9800998ecf8427e", False),
    ],
)
def test_every_spelling_of_no_rows_counts_as_empty(body: bytes, empty: bool) -> None:
    assert looks_empty(body) is empty


def test_a_500_sent_with_an_expired_token_is_checked_against_the_token(emu: Emulator) -> None:
    """The real v4/getCollectionDescriptions fails with 500 on a rejected token
    (CollectionDescDAOImpl); the fault stands in for that answer here."""
    client = make_client(emu, credentials=ALICE)
    before = client.collection_descriptions()
    assert before
    emu.expire_tokens()
    emu.add_fault(Fault("status", status=500, endpoint="getCollectionDescriptions", times=4))
    assert client.collection_descriptions() == before
    assert [p.status for p in calls(emu, "getMD5Hierarchy")] == [401]


def test_a_lasting_500_with_a_good_token_is_reported_after_one_probe(emu: Emulator) -> None:
    client = make_client(emu, credentials=ALICE)
    emu.add_fault(Fault("status", status=500, endpoint="getCollectionDescriptions"))
    with pytest.raises(ApiServerError, match="HTTP 500"):
        client.collection_descriptions()
    assert [p.status for p in calls(emu, "getMD5Hierarchy")] == [200]
    assert len(calls(emu, "getCollectionDescriptions")) == 4  # one round of retries only

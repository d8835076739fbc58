"""``nbia-audit doctor`` against the real emulator over loopback, and against broken variants.

Each variant is the emulator behind a loopback proxy that rewrites one kind of answer (or the
emulator itself mutated through its public hooks), so that exactly one assumption of
nbia-audit no longer holds; the doctor must then fail that row (and only the rows that depend
on it) and exit 1.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import requests.adapters
from click.testing import Result

from nbia_audit.client.servers import resolve_server
from nbia_audit.doctor.checks import UNKNOWN_UID
from nbia_audit.doctor.http import REQUEST_BUDGET, Prober, Unreachable
from nbia_audit.doctor.quirks import BOGUS_TOKEN
from nbia_audit.doctor.run import SAMPLE_SERIES, run_doctor
from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from tests.support.cli import run_cli

ANONYMOUS_ROWS = {
    "anonymous-v4",
    "series-row",
    "series-size",
    "sop-uids",
    "metadata",
    "strict-parameters",
    "hierarchy-series",
    "image-md5",
    "download-zip",
    "md5hashes-csv",
    "bytes-match-csv",
    "per-image-vs-csv",
    "hash-from-per-image",
    "hash-from-csv",
    "hash-study",
    "hash-patient",
    "doi-series",
    "licenses",
    "updated-series",
    "empty-list",
    "empty-hash",
    "empty-image-md5",
    "unknown-download",
    "rejected-token-probe",
    "rejected-token-list",
}
TOKEN_ROWS = {
    "token-password-grant",
    "token-accepted",
    "token-v2-family",
    "token-refresh",
    "logout",
}
CREDENTIALS = {"NBIA_USER": "alice", "NBIA_PASSWORD": "secret"}  # conftest's user
ANONYMOUS = {"NBIA_USER": "", "NBIA_PASSWORD": ""}


# -- a loopback proxy that can rewrite the emulator's answers -------------------------------
@dataclass
class Exchange:
    """What the proxy forwarded, and the emulator's answer, for a tamper to judge."""

    method: str
    path: str  # below /nbia-api/ (e.g. "services/v4/getSeries", "oauth/token")
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    content_type: str
    body: bytes

    def endpoint(self, name: str) -> bool:
        return self.path.endswith("/" + name) or self.path == name

    @property
    def anonymous(self) -> bool:
        return "authorization" not in self.headers

    @property
    def bogus_token(self) -> bool:
        return self.headers.get("authorization") == f"Bearer {BOGUS_TOKEN}"

    @property
    def real_token(self) -> bool:
        return not self.anonymous and not self.bogus_token


Reply = tuple[int, str, bytes]  # status, content type, body
Tamper = Callable[[Exchange], Reply | None]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed forward (the emulator is gone) just drops the client's connection."""


class TamperProxy:
    """Forwards to the emulator; ``tamper`` may replace any answer (None keeps it), and
    ``intercept`` may answer a request instead of the emulator (it is then never forwarded)."""

    def __init__(self, upstream: Emulator, tamper: Tamper, intercept: Tamper | None = None) -> None:
        self.seen: list[Exchange] = []
        proxy = self
        port = upstream.port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                url = urlsplit(self.path)
                params = dict(parse_qsl(url.query))
                if method == "POST":
                    params.update(parse_qsl(body.decode("utf-8", "replace")))
                seen = Exchange(
                    method=method,
                    path=url.path.removeprefix("/nbia-api/"),
                    params=params,
                    headers={k.lower(): v for k, v in headers.items()},
                    status=0,
                    content_type="",
                    body=b"",
                )
                reply = intercept(seen) if intercept is not None else None
                if reply is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    connection.request(method, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    seen.body = answer.read()
                    seen.status = answer.status
                    seen.content_type = answer.getheader("Content-Type") or ""
                    connection.close()
                    reply = tamper(seen)
                proxy.seen.append(seen)
                status, content_type, data = reply or (seen.status, seen.content_type, seen.body)
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status not in (204, 304):
                    self.wfile.write(data)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/nbia-api/services"

    def __enter__(self) -> TamperProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# -- running the doctor ---------------------------------------------------------------------
def run(server: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_cli("doctor", "--server", server, *args, env=env or ANONYMOUS)


def verdicts(result: Result) -> dict[str, str]:
    report = json.loads(result.output)
    return {row["check"]: row["verdict"] for row in report["checks"]}


def failed(result: Result) -> set[str]:
    return {name for name, verdict in verdicts(result).items() if verdict == "fail"}


def first_series(emu: Emulator) -> str:
    return sorted(s.series_uid for s in emu.corpus.series)[0]


@pytest.fixture
def series_uid(emulator: Emulator) -> str:
    return first_series(emulator)


# -- the emulator is a conforming archive ---------------------------------------------------
def test_every_row_passes_against_the_emulator_anonymously(emulator: Emulator) -> None:
    result = run(emulator.base_url, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = verdicts(result)
    assert {n for n, v in rows.items() if v == "pass"} == ANONYMOUS_ROWS | {"sample"}
    assert {n for n, v in rows.items() if v == "skip"} == TOKEN_ROWS


def test_every_row_passes_with_credentials_and_the_request_count_is_true(
    emulator: Emulator, series_uid: str
) -> None:
    emulator.reset_request_log()
    result = run(emulator.base_url, "--series", series_uid, "--format", "json", env=CREDENTIALS)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(verdicts(result).values()) == {"pass"}
    assert set(verdicts(result)) == ANONYMOUS_ROWS | TOKEN_ROWS
    # The count it prints is what the archive served, and it stays a few dozen at most.
    assert report["requests"] == emulator.request_count
    assert report["requests"] <= 40


def test_text_table_names_check_expected_answered_and_count(emulator: Emulator) -> None:
    result = run(emulator.base_url)
    assert result.exit_code == 0
    assert "[PASS] hash-from-csv: series hash recomputed from md5hashes.csv" in result.output
    assert "expected: 200, the bare hash: 32 lowercase hex characters" in result.output
    assert "answered: 200, text/plain, 32 bytes;" in result.output
    assert "[skip] token-refresh" in result.output
    assert result.output.rstrip().endswith("requests")
    assert " 0 failed, 5 skipped; " in result.output


# -- variants: each breaks one assumption ---------------------------------------------------
def _json(data: object) -> Reply:
    return 200, "application/json", json.dumps(data).encode()


def _rezip(
    body: bytes, edit: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]
) -> bytes:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        entries = [(n, archive.read(n)) for n in archive.namelist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in edit(entries):
            archive.writestr(name, data)
    return out.getvalue()


def _is(ex: Exchange, endpoint: str, *, known: bool = True) -> bool:
    """The request is for ``endpoint`` about the sample (known) or the unknown UID."""
    if not ex.endpoint(endpoint):
        return False
    uids = {ex.params.get("SeriesInstanceUID"), ex.params.get("SOPInstanceUID")}
    return (UNKNOWN_UID in uids) != known


def _anonymous_collections(ex: Exchange) -> Reply | None:
    # The archive starts demanding a token for v4 (the NPE of the old getData).
    if ex.endpoint("v4/getCollectionValues") and ex.anonymous:
        return 500, "text/plain", b"Server was not able to process your request\nnull"
    return None


def _series_row(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getSeries") and ex.anonymous and "Collection" not in ex.params:
        rows = json.loads(ex.body)
        return _json([{k: v for k, v in r.items() if k != "ImageCount"} for r in rows])
    return None


def _series_size(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getSeriesSize") and "SeriesInstanceUID" in ex.params:
        return _json([{"totalSizeInBytes": 1, "objectCount": 3}])
    return None


def _sop_uids(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getSOPInstanceUIDs"):
        rows = json.loads(ex.body)
        return _json(rows + rows[:1])  # one image listed twice
    return None


def _metadata(ex: Exchange) -> Reply | None:
    if ex.endpoint("v4/getSeriesMetadata"):
        return 400, "application/json", b"Invalid form parameter: 'format'."
    return None


def _strict(ex: Exchange) -> Reply | None:
    # v4 would ignore the misspelt filter, as v1/v2 do.
    if ex.endpoint("v4/getSeriesSize") and "SeriesInstanceUid" in ex.params:
        return _json([{"TotalSizeInBytes": 123456789, "ObjectCount": 9999}])
    return None


def _hierarchy_format(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getMD5Hierarchy") and ex.anonymous:
        return 200, "application/json", b'"' + ex.body + b'"'
    return None


def _per_image_empty(ex: Exchange) -> Reply | None:
    # A hidden series on the real archive: listed SOP UIDs whose MD5s come back empty.
    if _is(ex, "v4/getMD5HashForImage"):
        return 200, "text/plain", b""
    return None


def _csv_header(ex: Exchange) -> Reply | None:
    def edit(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        return [
            (n, d.replace(b"Filename,MD5Hash", b"FileName,MD5") if n == "md5hashes.csv" else d)
            for n, d in entries
        ]

    if _is(ex, "v4/getImageWithMD5Hash"):
        return 200, "application/octet-stream", _rezip(ex.body, edit)
    return None


def _csv_upper(ex: Exchange) -> Reply | None:
    # The stored strings come back re-cased in md5hashes.csv only.
    def edit(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        out = []
        for name, data in entries:
            if name == "md5hashes.csv":
                header, *rows = data.split(b"\n")
                data = b"\n".join(
                    [
                        header,
                        *(
                            r.partition(b",")[0]
                            + r.partition(b",")[1]
                            + r.partition(b",")[2].upper()
                            for r in rows
                        ),
                    ]
                )
            out.append((name, data))
        return out

    if _is(ex, "v4/getImageWithMD5Hash"):
        return 200, "application/octet-stream", _rezip(ex.body, edit)
    return None


def _per_image_upper(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getMD5HashForImage"):
        return 200, "text/plain", ex.body.upper()
    return None


def _hierarchy_algorithm(ex: Exchange) -> Reply | None:
    # The 2021 algorithm: GROUP_CONCAT with commas (protocol §1.5): a valid but other hash.
    if _is(ex, "v4/getMD5Hierarchy") and "SeriesInstanceUID" in ex.params and ex.body:
        return 200, "text/plain", hashlib.md5(ex.body + b",").hexdigest().encode()
    return None


def _study_hash(ex: Exchange) -> Reply | None:
    # A study hash over every series, hidden ones included: valid-looking, but another value.
    if ex.endpoint("v4/getMD5Hierarchy") and "StudyInstanceUID" in ex.params:
        return 200, "text/plain", hashlib.md5(ex.body + ex.body).hexdigest().encode()
    return None


def _patient_hash(ex: Exchange) -> Reply | None:
    # PatientID alone would do, and the pair no longer matches anything.
    if ex.endpoint("v4/getMD5Hierarchy") and "PatientID" in ex.params:
        return 200, "text/plain", b""
    return None


def _doi(ex: Exchange) -> Reply | None:
    # The DAO's answer when authorization fails (issue 12): an empty list.
    if ex.endpoint("v4/getCollectionOrSeriesForDOI"):
        return _json([])
    return None


def _licenses(ex: Exchange) -> Reply | None:
    if ex.endpoint("getLicenses"):
        rows = json.loads(ex.body)
        return _json([{("name" if k == "longName" else k): v for k, v in r.items()} for r in rows])
    return None


def _updated(ex: Exchange) -> Reply | None:
    if ex.endpoint("v4/getUpdatedSeries"):
        return 400, "application/json", b"fromDate must be in the format dd/MM/yyyy"
    return None


def _empty_list(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getSeries", known=False):
        return 500, "text/plain", b"Server was not able to process your request\nnull"
    return None


def _empty_hash(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getMD5Hierarchy", known=False):
        return 200, "text/plain", hashlib.md5(b"").hexdigest().encode()  # pre-2021-04-28
    return None


def _empty_image_md5(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getMD5HashForImage", known=False):
        return 200, "text/plain", b"null"
    return None


def _unknown_download(ex: Exchange) -> Reply | None:
    if _is(ex, "v4/getImageWithMD5Hash", known=False):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("md5hashes.csv", "Filename,MD5Hash\n")
        return 200, "application/octet-stream", out.getvalue()
    return None


def _probe_swallowed(ex: Exchange) -> Reply | None:
    if ex.endpoint("v4/getMD5Hierarchy") and ex.bogus_token:
        return 200, "text/plain", b""
    return None


def _bad_token_list_error(ex: Exchange) -> Reply | None:
    if ex.endpoint("v4/getSeries") and ex.bogus_token:
        return 500, "text/plain", b"Server was not able to process your request\nnull"
    return None


def _password_grant(ex: Exchange) -> Reply | None:
    if ex.endpoint("oauth/token") and ex.params.get("grant_type") == "password":
        token = json.loads(ex.body)
        return _json({k: v for k, v in token.items() if k != "expires_in"})
    return None


def _token_rejected(ex: Exchange) -> Reply | None:
    if ex.endpoint("v4/getMD5Hierarchy") and ex.real_token:
        return 401, "", b""
    return None


def _v2_family(ex: Exchange) -> Reply | None:
    if ex.endpoint("v2/getSeries"):
        return 500, "text/plain", b"Server was not able to process your request\nnull"
    return None


def _refresh(ex: Exchange) -> Reply | None:
    if ex.endpoint("oauth/token") and ex.params.get("grant_type") == "refresh_token":
        return 400, "application/json", b'{"error":"invalid_grant"}'
    return None


def _logout(ex: Exchange) -> Reply | None:
    if ex.endpoint("logout"):
        return 405, "text/plain", b""
    return None


def _untouched(ex: Exchange) -> Reply | None:
    return None


@dataclass(frozen=True)
class Variant:
    row: str
    tamper: Tamper
    also: frozenset[str] = frozenset()  # rows that depend on the broken one and fail with it
    credentials: bool = False
    intercept: bool = False  # answer instead of the emulator (its state must not change)
    fault: bool = False  # the emulator's own drop_images fault: a ZIP cut short, no CSV


VARIANTS = [
    Variant("anonymous-v4", _anonymous_collections),
    Variant("series-row", _series_row),
    Variant("series-size", _series_size),
    Variant("sop-uids", _sop_uids),
    Variant("metadata", _metadata),
    Variant("strict-parameters", _strict),
    Variant("hierarchy-series", _hierarchy_format),
    Variant("image-md5", _per_image_empty),
    Variant("download-zip", _untouched, frozenset({"md5hashes-csv"}), fault=True),
    Variant("md5hashes-csv", _csv_header),
    Variant("per-image-vs-csv", _csv_upper, frozenset({"hash-from-csv"})),
    Variant("hash-from-per-image", _per_image_upper, frozenset({"per-image-vs-csv"})),
    Variant(
        "hash-from-csv",
        _hierarchy_algorithm,
        # The study and patient rows are recomputed from the archive's series hashes.
        frozenset({"hash-from-per-image", "hash-study", "hash-patient"}),
    ),
    Variant("hash-study", _study_hash),
    Variant("hash-patient", _patient_hash),
    Variant("doi-series", _doi),
    Variant("licenses", _licenses),
    Variant("updated-series", _updated),
    Variant("empty-list", _empty_list),
    Variant("empty-hash", _empty_hash),
    Variant("empty-image-md5", _empty_image_md5),
    Variant("unknown-download", _unknown_download),
    Variant("rejected-token-probe", _probe_swallowed),
    Variant("rejected-token-list", _bad_token_list_error),
    Variant("token-password-grant", _password_grant, credentials=True),
    Variant("token-accepted", _token_rejected, credentials=True),
    Variant("token-v2-family", _v2_family, credentials=True),
    Variant("token-refresh", _refresh, credentials=True, intercept=True),
    Variant("logout", _logout, credentials=True),
]


def test_every_row_has_a_variant() -> None:
    covered = {v.row for v in VARIANTS} | {"bytes-match-csv", "sample"}
    assert covered == ANONYMOUS_ROWS | TOKEN_ROWS | {"sample"}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.row)
def test_a_broken_assumption_fails_its_row_and_exits_1(
    emulator: Emulator, series_uid: str, variant: Variant
) -> None:
    env = CREDENTIALS if variant.credentials else ANONYMOUS
    tamper, intercept = (
        (_untouched, variant.tamper) if variant.intercept else (variant.tamper, None)
    )
    if variant.fault:
        emulator.add_fault(Fault("drop_images", endpoint="getImageWithMD5Hash", count=1))
    with TamperProxy(emulator, tamper, intercept) as proxy:
        result = run(proxy.base_url, "--series", series_uid, "--format", "json", env=env)
    assert result.exit_code == 1, result.output
    assert failed(result) == {variant.row} | variant.also
    assert json.loads(result.output)["failed"] == [
        name for name in verdicts(result) if name in failed(result)
    ]


def test_served_bytes_that_differ_from_the_stored_md5_fail_their_row(
    emulator: Emulator, series_uid: str
) -> None:
    # The emulator's own hook: a stored md5_digest that no longer matches the file; the
    # archive's three views (per image, CSV, hierarchy) still agree with one another.
    sop = next(i.sop_uid for i in emulator.corpus.images if i.series_uid == series_uid)
    emulator.set_stored_md5(sop, "0" * 32)
    result = run(emulator.base_url, "--series", series_uid, "--format", "json")
    assert result.exit_code == 1
    assert failed(result) == {"bytes-match-csv"}


def test_discovery_fails_its_row_when_no_series_is_listed(emulator: Emulator) -> None:
    def no_series(ex: Exchange) -> Reply | None:
        return (200, "", b"") if ex.endpoint("v4/getSeries") and "Collection" in ex.params else None

    with TamperProxy(emulator, no_series) as proxy:
        result = run(proxy.base_url, "--format", "json")
    assert result.exit_code == 1
    assert failed(result) == {"sample"}
    assert set(verdicts(result)) == {"anonymous-v4", "sample"}


# -- unreachable, budget, usage -------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_archive_exits_3_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/nbia-api/services"
    result = run_cli("doctor", "--server", url, env=ANONYMOUS)
    assert result.exit_code == 3
    assert "no answer from 127.0.0.1" in result.output
    assert "1 requests" in result.output


def test_an_archive_that_goes_away_mid_run_exits_3_not_0(
    emulator: Emulator, series_uid: str
) -> None:
    def vanish(ex: Exchange) -> Reply | None:
        if ex.endpoint("v4/getImageWithMD5Hash"):
            emulator.stop()
        return None

    with TamperProxy(emulator, vanish) as proxy:
        result = run(proxy.base_url, "--series", series_uid, "--format", "json")
    report = json.loads(result.output.split("\nnbia-audit: error")[0])
    assert result.exit_code == 3
    assert report["complete"] is False and report["failed"] == []


def test_the_prober_never_exceeds_its_budget(emulator: Emulator) -> None:
    prober = Prober(resolve_server(emulator.base_url), budget=2)
    prober.get("v4/getCollectionValues")
    prober.get("v4/getCollectionValues")
    with pytest.raises(Unreachable, match="budget of 2 requests"):
        prober.get("v4/getCollectionValues")
    prober.close()
    assert emulator.request_count == 2


def test_a_bad_server_is_a_usage_error() -> None:
    result = run_cli("doctor", "--server", "ftp://example", env=ANONYMOUS)
    assert result.exit_code == 2
    assert "unknown NBIA server" in result.output


# -- the evidence record --------------------------------------------------------------------
def test_record_keeps_every_exchange_and_never_a_secret(tmp_path: Path) -> None:
    password = "pw-Zq9x-unique"
    spec = CorpusSpec(seed=3, collections=1, patients=1, studies=1, series=1, images=2)
    with Emulator.from_spec(spec, users={"carol": password}) as emu:
        tokens: set[str] = set()

        def collect(ex: Exchange) -> None:
            if ex.endpoint("oauth/token") and ex.status == 200:
                answer = json.loads(ex.body)
                tokens.update(answer[k] for k in ("access_token", "refresh_token", "id_token"))

        with TamperProxy(emu, lambda ex: collect(ex)) as proxy:
            env = {"NBIA_USER": "carol", "NBIA_PASSWORD": password}
            result = run(proxy.base_url, "--record", str(tmp_path / "evidence"), env=env)
            forwarded = len(proxy.seen)
    assert result.exit_code == 0, result.output
    assert len(tokens) == 6  # two grants, three tokens each
    files = [p for p in (tmp_path / "evidence").rglob("*") if p.is_file()]
    exchanges = json.loads((tmp_path / "evidence" / "exchanges.json").read_text())
    assert len(exchanges) == forwarded
    assert {e["endpoint"] for e in exchanges} >= {"oauth/token", "logout", "v4/getMD5Hierarchy"}
    assert any(e.get("body_file") for e in exchanges)  # the ZIP, kept whole
    for path in files:
        data = path.read_bytes()
        for secret in (password, *tokens):
            assert secret.encode() not in data, f"{secret[:6]}… in {path.name}"
    report = json.loads((tmp_path / "evidence" / "report.json").read_text())
    assert report["failed"] == [] and report["requests"] == forwarded


def test_record_removes_secrets_even_from_an_echoing_server(
    emulator: Emulator, series_uid: str, tmp_path: Path
) -> None:
    # A broken server that echoes what it was sent: the password and the bearer token must
    # still not reach the disk.
    def echo(ex: Exchange) -> Reply | None:
        if ex.endpoint("v2/getSeries"):
            return 500, "text/plain", f"bad header {ex.headers['authorization']}".encode()
        if ex.endpoint("oauth/token") and ex.params.get("grant_type") == "password":
            answer = json.loads(ex.body)
            answer["debug"] = f"granted for password {ex.params['password']}"
            return _json(answer)
        return None

    with TamperProxy(emulator, echo) as proxy:
        result = run(
            proxy.base_url, "--series", series_uid, "--record", str(tmp_path), env=CREDENTIALS
        )
    assert result.exit_code == 1
    assert json.loads((tmp_path / "report.json").read_text())["failed"] == ["token-v2-family"]
    text = (tmp_path / "exchanges.json").read_text()
    assert "granted for password <removed>" in text
    assert "bad header Bearer <removed>" in text
    assert CREDENTIALS["NBIA_PASSWORD"] not in text.replace("<removed>", "")


# -- the series it examines, and the most it ever asks --------------------------------------
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "real-samples"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="real samples are not present")
@pytest.mark.parametrize("alias", sorted(SAMPLE_SERIES))
def test_each_named_server_examines_a_series_its_cited_sample_holds(alias: str) -> None:
    sample = SAMPLE_SERIES[alias]
    cited = sample.source.split(":")[0].removeprefix("real-samples/")
    assert sample.series_uid in (SAMPLES / cited).read_text()


class _ToLoopback(requests.adapters.HTTPAdapter):
    """Sends every request to the emulator instead of the host in its URL."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self.origin = f"http://127.0.0.1:{emulator.port}"

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = self.origin + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


def test_the_public_alias_asks_about_its_cited_series(emulator: Emulator) -> None:
    session = requests.Session()
    session.mount("https://", _ToLoopback(emulator))
    report, _, _ = run_doctor("public", session=session)
    uid = SAMPLE_SERIES["public"].series_uid
    assert report.series_uid == uid and report.server.startswith("https://services.")
    asked = {value for r in emulator.requests for _, value in r.params}
    assert uid in asked
    # The emulator does not hold the LIDC-IDRI series: its row fails, nothing passes falsely.
    assert "series-row" in {c.name for c in report.failed}
    assert report.requests == emulator.request_count <= REQUEST_BUDGET


def test_the_worst_case_run_stays_within_40_requests() -> None:
    # 10 images per series (the per-image limit) and 5 series for the patient (the tree
    # limit), discovered on a URL, with credentials: every row that asks, asks.
    spec = CorpusSpec(seed=11, collections=1, patients=1, studies=1, series=5, images=10)
    with Emulator.from_spec(spec, users={"alice": "secret"}) as emu:
        result = run(emu.base_url, "--format", "json", env=CREDENTIALS)
        served = emu.request_count
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert "skip" not in verdicts(result).values()
    assert report["requests"] == served == 40


def test_a_zip_claiming_gigabytes_is_not_unpacked(emulator: Emulator, series_uid: str) -> None:
    def bomb(ex: Exchange) -> Reply | None:
        if not _is(ex, "v4/getImageWithMD5Hash"):
            return None
        data = bytearray(ex.body)
        central = data.index(b"PK\x01\x02")
        data[central + 24 : central + 28] = (0xF0000000).to_bytes(4, "little")
        return 200, "application/octet-stream", bytes(data)

    with TamperProxy(emulator, bomb) as proxy:
        result = run(proxy.base_url, "--series", series_uid, "--format", "json")
    rows = {row["check"]: row for row in json.loads(result.output)["checks"]}
    assert rows["download-zip"]["verdict"] == "fail"
    assert "would unpack to 4026" in rows["download-zip"]["answered"]


def test_what_nbia_audit_tolerates_does_not_fail(emulator: Emulator, series_uid: str) -> None:
    # A LICENSE entry (getImage's), md5hashes.csv not last, `[]` for "no rows", a decimal
    # ObjectCount: the client reads all of these, so the doctor must not call them changes.
    def tolerable(ex: Exchange) -> Reply | None:
        if _is(ex, "v4/getImageWithMD5Hash"):
            body = _rezip(
                ex.body, lambda entries: [entries[-1], ("LICENSE", b"CC BY\n"), *entries[:-1]]
            )
            return 200, "application/octet-stream", body
        if _is(ex, "v4/getSeries", known=False):
            return _json([])
        if _is(ex, "v4/getSeriesSize") and "SeriesInstanceUID" in ex.params:
            row = json.loads(ex.body)[0]
            return _json([{"TotalSizeInBytes": row["TotalSizeInBytes"], "ObjectCount": 3.0}])
        return None

    with TamperProxy(emulator, tolerable) as proxy:
        result = run(proxy.base_url, "--series", series_uid, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["check"]: row["answered"] for row in json.loads(result.output)["checks"]}
    assert "no rows ([])" in rows["empty-list"]
    assert "'00000003.dcm' last" in rows["download-zip"]


def test_the_public_host_named_by_url_is_the_public_alias(emulator: Emulator) -> None:
    session = requests.Session()
    session.mount("https://", _ToLoopback(emulator))
    url = "https://services.cancerimagingarchive.net/nbia-api"
    report, _, _ = run_doctor(url, session=session)
    assert report.series_uid == SAMPLE_SERIES["public"].series_uid

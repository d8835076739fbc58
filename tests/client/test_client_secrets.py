"""Secrets never shown, whatever the server echoes (issue 11 #4).

A small loopback server in this file plays an NBIA (or a proxy in front of one) that echoes
what it was sent into its error bodies: the token form (the password URL-encoded), the
``Authorization`` header, a refresh token, a Basic header, JSON-escaped copies. The emulator
never echoes, so it cannot stand in here. Every test asserts on the text a user would see:
the exception message, the exception's ``server_message`` and every log record.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus

import pytest

from nbia_audit.client import Credentials, NbiaClient, RetryPolicy
from nbia_audit.errors import ApiError
from tests.support.cli import run_cli

MASK = "***"

PASSWORD = "Pa$$ w0rd/+é&=%x"
USER = "carol"
ACCESS = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYXJvbCJ9.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZw"
REFRESH = "refresh-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def _forms_of(secret: str) -> list[str]:
    """Every spelling of ``secret`` that must not be shown."""
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(raw).decode(),
    ]


SECRET_FORMS = [
    *_forms_of(PASSWORD),
    *_forms_of(ACCESS),
    *_forms_of(REFRESH),
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    ACCESS[:16],  # a prefix: what a cut-short message would have shown
]


class _Echo(BaseHTTPRequestHandler):
    server: _EchoServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        return

    def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _echo(self, sent: str) -> str:
        headers = dict(self.headers.items())
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        front = (
            f"sent: {sent} | json: {json.dumps(headers)} | Authorization: Basic {basic} | "
            f"refresh {REFRESH} {json.dumps({'refresh_token': REFRESH, 'pw': PASSWORD})} | "
        )
        # The last copy straddles the 500th character, where messages are cut short.
        return front + "x" * max(0, 450 - len(front)) + f"{self.headers.get('Authorization')}"

    def do_POST(self) -> None:
        sent = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.path.endswith("/oauth/token"):
            form = parse_qs(sent)
            if self.server.refuse_login:
                # Keycloak-style error that quotes the raw form back.
                error = {"error": "invalid_grant", "error_description": f"rejected {sent}"}
                self._reply(401, json.dumps(error), "application/json")
                return
            assert form["password"] == [PASSWORD]
            token = {"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600}
            self._reply(200, json.dumps(token), "application/json")
        elif self.path.endswith("/logout"):
            self._reply(500, self._echo(sent))
        else:
            self._reply(self.server.status, self._echo(sent))

    def do_GET(self) -> None:
        self._reply(self.server.status, self._echo(self.path))


class _EchoServer(ThreadingHTTPServer):
    refuse_login = False
    status = 500


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _client(server: _EchoServer) -> NbiaClient:
    url = f"http://127.0.0.1:{server.server_address[1]}/nbia-api/services"
    return NbiaClient(
        url,
        api="v2",
        credentials=Credentials(USER, PASSWORD),
        retry=RetryPolicy(attempts=2, base=0.0, cap=0.0),
        sleep=lambda _s: None,
    )


def _shown(error: BaseException) -> str:
    return f"{error} {getattr(error, 'server_message', '')} {error!r}"


def _assert_clean(text: str) -> None:
    leaked = [form for form in SECRET_FORMS if form in text]
    assert not leaked, f"secret forms shown: {leaked}"


@pytest.mark.parametrize("status", [500, 400, 403])
def test_an_error_body_echoing_every_secret_shows_none(
    echo: _EchoServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    echo.status = status
    caplog.set_level(logging.DEBUG)
    client = _client(echo)
    with pytest.raises(ApiError) as caught:
        client.series(collection="C")
    shown = _shown(caught.value)
    assert "Basic " + MASK in shown  # the echo is shown, redacted
    _assert_clean(shown)
    with pytest.raises(ApiError) as on_logout:
        client.logout()
    _assert_clean(_shown(on_logout.value))
    _assert_clean(caplog.text)


def test_a_token_endpoint_quoting_the_form_shows_no_password(
    echo: _EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    echo.refuse_login = True
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApiError) as caught:
        _client(echo).series()
    shown = _shown(caught.value)
    assert "invalid_grant" in shown and "username=carol" in shown
    _assert_clean(shown)
    _assert_clean(caplog.text)


def test_redaction_covers_every_encoding_and_excerpts_are_printable() -> None:
    from nbia_audit.client.redact import excerpt, redact, remember

    remember("S3cr3t-tok/en+==")
    spellings = [
        "S3cr3t-tok/en+==",
        "S3cr3t-tok%2Fen%2B%3D%3D",
        "S3cr3t-tok%2fen%2b%3d%3d",  # lower-case escapes; the letters keep their case
        "S3cr3t-tok/en%2B%3D%3D",
        "S3cr3t-tok\\/en+==",  # JSON with an escaped solidus
        base64.b64encode(b"S3cr3t-tok/en+==").decode(),
    ]
    for spelling in spellings:
        assert redact(f"before {spelling} after") == f"before {MASK} after", spelling
    assert redact("s3cr3t-tok/en+==") == "s3cr3t-tok/en+=="  # another string, left alone
    shown = excerpt(b"\x1b[31mred\x1b[0m\r\nforged line\x00 " + b"y" * 500, limit=60)
    assert "\x1b" not in shown and "\n" not in shown and "\x00" not in shown
    assert shown.startswith("\\x1b[31mred\\x1b[0m forged line\\x00") and shown.endswith("…")
    assert len(shown) == 61


def test_the_lock_verb_never_prints_a_secret_the_server_echoes(
    echo: _EchoServer, tmp_path: Path
) -> None:
    echo.status = 400  # not retried: one echo, no backoff
    url = f"http://127.0.0.1:{echo.server_address[1]}/nbia-api/services"
    spec = tmp_path / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {url}\nselect:\n  - collection: C\n", encoding="utf-8")
    env = {"NBIA_USER": USER, "NBIA_PASSWORD": PASSWORD}
    result = run_cli("lock", spec, "--quiet", env=env)
    assert result.exit_code == 3, result.output
    assert "Basic " + MASK in result.stderr and "Traceback" not in result.stderr
    _assert_clean(result.output + result.stderr)
    assert not (tmp_path / "dataset.lock").exists()

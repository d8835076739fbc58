"""The HTTP front: a threaded HTTP/1.1 server speaking NBIA's paths, auth rules and faults.

Ordinary responses carry ``Content-Length`` and keep the connection alive (so a
``requests.Session`` pools it); downloads are streamed with chunked transfer encoding and no
``Content-Length``, as Jersey's ``StreamingOutput`` does (protocol §2.1).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Importing the API modules registers their routes.
from nbia_audit.emulator import (  # noqa: F401
    api_advanced,
    api_auth,
    api_carts,
    api_download,
    api_extras,
    api_search,
    api_simple_search,
)
from nbia_audit.emulator.auth import GUEST_USER
from nbia_audit.emulator.backend import Backend, RequestRecord
from nbia_audit.emulator.routes import ROUTES, Request, Route
from nbia_audit.emulator.wire import (
    GENERIC_ERROR,
    Response,
    invalid_parameter,
    server_error,
    text,
)

PREFIXES = ("/nbia-api/services/", "/nbia-api/")
CONTROL_PREFIX = "/_emulator/"
ZIP_ENDPOINTS = frozenset({"getImage", "getImageWithMD5Hash"})
# Never keep credentials in the request log.
SECRET_FIELDS = frozenset({"password", "client_secret", "refresh_token"})
_CHUNK = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
# What the UncaughtException mapper prints after its generic line for Jersey's own exceptions
# (their getMessage(), Jersey 2.x): unknown path, wrong method, form without a form body.
JERSEY_NOT_FOUND = f"{GENERIC_ERROR}\nHTTP 404 Not Found"
JERSEY_NOT_ALLOWED = f"{GENERIC_ERROR}\nHTTP 405 Method Not Allowed"
JERSEY_UNSUPPORTED = f"{GENERIC_ERROR}\nHTTP 415 Unsupported Media Type"
JERSEY_FORM_PARAM = (
    f"{GENERIC_ERROR}\nThe @FormParam is utilized when the content type of the request entity "
    "is not application/x-www-form-urlencoded"
)

ControlHandler = Callable[[str, str, dict[str, Any]], tuple[int, object]]


class _Abort(Exception):
    """Stop writing: the connection has been cut on purpose or by the peer."""


def _resolve_user(ctx: Backend, route: Route, headers: dict[str, str]) -> str | Response | None:
    """The caller's user name, an early response, or None for "no authorization" (§4.3)."""
    if route.auth in ("guest", "public"):
        return GUEST_USER
    header = headers.get("authorization")
    if header is not None and header.lower() == "bearer undefined":
        return GUEST_USER
    if header is None:
        if route.family == "v4":
            return GUEST_USER
        # The old getData dereferences the missing header: an NPE.
        return None if route.auth == "swallow" else server_error()
    user = ctx.tokens.user_for(header[7:])
    if user is not None:
        return user
    # Keycloak userinfo refuses the token: UnauthorizedException.
    return None if route.auth == "swallow" else Response(401)


def _form_refusal(route: Route, headers: dict[str, str]) -> Response | None:
    """Jersey's answer to a form resource called without a form body, or None if it is one.

    ``@FormParam`` injection throws ``IllegalStateException`` unless the request's media type
    is ``application/x-www-form-urlencoded``; a ``MultivaluedMap`` entity finds no reader
    (``NotSupportedException``). The catch-all mapper makes either a 500 (inference, §8).
    """
    if route.method != "POST" or route.param_kind != "form":
        return None
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == FORM_TYPE:
        return None
    return server_error(JERSEY_UNSUPPORTED if route.form_entity else JERSEY_FORM_PARAM)


class _ChunkedSink:
    """Chunked transfer encoding with an optional cut after ``limit`` body bytes."""

    def __init__(self, handler: _Handler, limit: int | None) -> None:
        self._handler = handler
        self._limit = limit
        self._sent = 0
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._limit is not None and self._sent + len(data) > self._limit:
            data = data[: self._limit - self._sent]
            self._send(data)
            raise _Abort("truncated")
        self._send(data)

    def _send(self, data: bytes) -> None:
        if not data:
            return
        self._sent += len(data)
        self._handler.raw_write(b"%x\r\n%s\r\n" % (len(data), data))

    def close(self) -> None:
        self._flush()
        self._handler.raw_write(b"0\r\n\r\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle holds the body
    # back until the client's delayed ACK (40 ms) arrives, so every request took 40+ ms.
    disable_nagle_algorithm = True
    server_version = "nbia-audit-emulator"
    timeout = 120  # idle keep-alive connections end eventually
    backend: Backend
    control: ControlHandler

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the library never prints."""

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- plumbing --------------------------------------------------------------------------
    def raw_write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _Abort("peer went away") from exc

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        self._record: RequestRecord | None = None
        url = urlsplit(self.path)
        body = self._read_body()
        query = parse_qsl(url.query, keep_blank_values=True)
        form: list[tuple[str, str]] = []
        content_type = (self.headers.get("Content-Type") or "").lower()
        if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        if url.path.startswith(CONTROL_PREFIX):
            self._serve_control(method, url.path[len(CONTROL_PREFIX) :], body)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        route = self._route(url.path)
        record = RequestRecord(
            method=method,
            path=url.path,
            endpoint=route.endpoint if route else "",
            params=tuple((k, "***" if k in SECRET_FIELDS else v) for k, v in query + form),
            status=0,
            token_sent="authorization" in headers,
            family=route.family if route else "",
            client_port=int(self.client_address[1]),
        )
        # Recorded before the first response byte leaves, so a client that has its answer
        # always finds the request in the log.
        self._record = record
        try:
            self._dispatch(method, route, query, form, headers)
        finally:
            self._log(0)  # no response was started (a reset or a crash)

    def _log(self, status: int) -> None:
        record, self._record = self._record, None
        if record is not None:
            self.backend.log.add(replace(record, status=status))

    def _under_nbia_api(self) -> bool:
        return urlsplit(self.path).path.startswith(PREFIXES[-1])

    def _route(self, path: str) -> Route | None:
        for prefix in PREFIXES:
            if path.startswith(prefix):
                return ROUTES.get(path[len(prefix) :])
        return None

    def _dispatch(
        self,
        method: str,
        route: Route | None,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> int:
        if route is None:
            if self._under_nbia_api():
                # Jersey's NotFoundException through the catch-all mapper (inference, §8).
                return self._send(method, server_error(JERSEY_NOT_FOUND))
            return self._send(method, text(404, "Not Found", "text/plain"))
        allowed_method = route.method in (method, "GET" if method == "HEAD" else "")
        if not allowed_method:
            return self._send(method, server_error(JERSEY_NOT_ALLOWED))
        if not_a_form := _form_refusal(route, headers):
            return self._send(method, not_a_form)
        faults = self.backend.faults
        for fault in faults.take(route.endpoint, ("latency",)):
            time.sleep(fault.delay)
        if faults.take(route.endpoint, ("reset",)):
            self._log(0)
            self._reset()
            return 0
        if limited := faults.take(route.endpoint, ("rate_limit",)):
            retry = ("Retry-After", str(limited[0].retry_after))
            return self._send(method, Response(429, b"Too Many Requests", "text/plain", (retry,)))
        if failed := faults.take(route.endpoint, ("status",)):
            code = failed[0].status
            return self._send(method, text(code, f"Injected fault: HTTP {code}", "text/plain"))
        truncate = faults.take(route.endpoint, ("truncate",))
        drop = (
            faults.take(route.endpoint, ("drop_images",)) if route.endpoint in ZIP_ENDPOINTS else []
        )
        response = self._respond(route, method, query, form, headers, drop[0].count if drop else 0)
        return self._send(method, response, truncate[0].after_bytes if truncate else None)

    def _respond(
        self,
        route: Route,
        method: str,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        headers: dict[str, str],
        drop: int,
    ) -> Response:
        pairs = query + form
        if route.allowed is not None:
            for name, _ in pairs:
                if name not in route.allowed:
                    return invalid_parameter(route.param_kind, name, route.allowed)
        user = _resolve_user(self.backend, route, headers)
        if isinstance(user, Response):
            return user
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        request = Request(
            method=method,
            path=self.path,
            params=params,
            headers=headers,
            user=user or "",
            sites=self.backend.sites_for(user),
            family=route.family,
            drop_images=drop,
        )
        try:
            return route.handler(self.backend, request)
        except Exception:  # noqa: BLE001 - the UncaughtException mapper's job (§8)
            return server_error()

    # -- writing ---------------------------------------------------------------------------
    def _send(self, method: str, response: Response, truncate: int | None = None) -> int:
        self._log(response.status)
        try:
            self._write_response(method, response, truncate)
        except _Abort:
            self._cut()
        return response.status

    def _write_response(self, method: str, response: Response, truncate: int | None) -> None:
        self.send_response(response.status)
        content_type = response.content_type
        if content_type is None and response.body:
            content_type = "text/plain"
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.stream is not None and method != "HEAD":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sink = _ChunkedSink(self, truncate)
            response.stream(sink)
            sink.close()
            return
        body = response.body
        if response.status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "HEAD" or response.status in (204, 304):
            return
        if truncate is not None and len(body) > truncate:
            self.raw_write(body[:truncate])
            raise _Abort("truncated")
        self.raw_write(body)

    def _cut(self) -> None:
        # A clean FIN after partial data: the client sees a body that ends too early.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _reset(self) -> None:
        # SO_LINGER 0 then close: the peer gets a TCP RST and no response at all.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _serve_control(self, method: str, path: str, body: bytes) -> None:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = None
        result: object
        if not isinstance(payload, dict):
            status, result = 400, {"error": "the body must be a JSON object"}
        else:
            status, result = type(self).control(method, path, payload)
        data = json.dumps(result, sort_keys=True).encode("utf-8")
        self._send(method, Response(status, data, "application/json"))


class EmulatorHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with daemon threads that can drop its keep-alive connections."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: a broken connection is the client's business, and the library never prints."""

    def close_connections(self) -> None:
        """Cut every open connection, so a stopped emulator answers nothing at all."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def make_server(
    backend: Backend, control: ControlHandler, host: str = "127.0.0.1", port: int = 0
) -> EmulatorHTTPServer:
    """Bind a server for ``backend`` (port 0: a free port) without starting it."""
    handler = type(
        "EmulatorHandler", (_Handler,), {"backend": backend, "control": staticmethod(control)}
    )
    return EmulatorHTTPServer((host, port), handler)

"""A hostile NBIA server on loopback, for tests only: the emulator behind a proxy that lies.

``HostileServer`` forwards every request to a running emulator, except those a ``Hostile``
rule matches (an endpoint name and, optionally, a series); those it answers itself in one of
the ``MODES``. The modes are what an attacker, a broken proxy or a dying archive can send:

ZIP bodies (``getImageWithMD5Hash``), built from the series' genuine ZIP:
    ``traversal``   an image renamed ``../../escaped.dcm`` (and listed so in md5hashes.csv)
    ``symlink``     an extra member that is a symbolic link to ``/etc/passwd``
    ``bomb``        an extra member declaring 4 GB, its data a deflated run of zeros
    ``bomb_lying``  an image replaced by 64 MiB of deflated zeros that declares 1 KiB
    ``duplicate``   an image member repeated under the same name
    ``wrong_series`` the genuine ZIP of another series
    ``csv_huge``    md5hashes.csv with a 128 KiB field

Any endpoint:
    ``html200``     an HTML maintenance page with status 200
    ``empty``       status 200 and an empty body
    ``huge_field``  the genuine answer with a 128 KiB value spliced into its first field
    ``length_long`` a Content-Length 1000 bytes larger than the body, then the connection ends
    ``length_short`` a Content-Length half the body's size
    ``drip``        64 bytes every ``drip_interval`` seconds until the client leaves (or, as a
                    safety net against a client that never does, ``drip_for`` seconds)
    ``reset``       half the body, then a TCP reset
    ``stall``       the headers, then silence until the client leaves (or ``drip_for`` seconds)

Nothing here is part of the product; it exists so the tests can prove that no such answer
produces a traceback, a placed unverified file or a write outside the destination.
"""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import socket
import struct
import sys
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import requests

ZIP_MODES = (
    "traversal",
    "symlink",
    "bomb",
    "bomb_lying",
    "duplicate",
    "wrong_series",
    "csv_huge",
)
ANY_MODES = ("html200", "empty", "huge_field", "length_long", "length_short", "drip", "reset")
MODES = (*ZIP_MODES, *ANY_MODES, "stall")

HUGE = 200_000  # one field larger than Python's csv field limit (131072)
MAINTENANCE = (
    b"<!DOCTYPE html><html><head><title>Down for maintenance</title></head>"
    b"<body><h1>NBIA is down for maintenance</h1><p>Back soon.</p></body></html>"
)


@dataclass(frozen=True)
class Hostile:
    """Answer requests for ``endpoint`` (and ``series_uid``, when given) in ``mode``."""

    endpoint: str
    mode: str
    series_uid: str | None = None
    other_series_uid: str | None = None  # the series whose ZIP ``wrong_series`` serves

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown hostile mode {self.mode!r}")
        if self.mode == "wrong_series" and not self.other_series_uid:
            raise ValueError("wrong_series needs other_series_uid")


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client hanging up on a drip or a reset is the expected end of a hostile answer.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class HostileServer:
    """A threaded loopback proxy to ``upstream`` (an emulator's base URL) that applies rules."""

    def __init__(
        self,
        upstream: str,
        rules: list[Hostile],
        drip_interval: float = 0.01,
        drip_for: float = 5.0,
    ) -> None:
        self.origin = upstream.split("/nbia-api")[0]
        self.rules = list(rules)
        self.drip_interval = drip_interval
        # A safety net, not part of the hostility: a client that never gives up makes the test
        # fail (a cut body) after ``drip_for`` seconds instead of hanging the suite.
        self.drip_for = drip_for
        self.hits: dict[str, int] = {}
        self.dripping = 0  # drips in progress (each ends when its client disconnects)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/nbia-api/services"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def rule_for(self, path: str, params: dict[str, str]) -> Hostile | None:
        endpoint = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]
        for rule in self.rules:
            if rule.endpoint != endpoint:
                continue
            if rule.series_uid is not None and params.get("SeriesInstanceUID") != rule.series_uid:
                continue
            with self._lock:
                self.hits[rule.mode] = self.hits.get(rule.mode, 0) + 1
            return rule
        return None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._serve("GET", b"")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _serve(self, method: str, body: bytes) -> None:
                query = urlsplit(self.path).query
                params = dict(parse_qsl(query))
                if method == "POST":
                    params.update(parse_qsl(body.decode("utf-8", "replace")))
                rule = server.rule_for(self.path, params)
                if rule is None:
                    status, kind, payload = server.forward(
                        method, self.path, body, dict(self.headers.items())
                    )
                    self._answer(status, kind, payload)
                    return
                server.misbehave(self, rule, method, body)

            def _answer(self, status: int, kind: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        return Handler

    def forward(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str, bytes]:
        sent = {
            name: value
            for name, value in headers.items()
            if name.lower() in ("content-type", "authorization")
        }
        answer = requests.request(method, self.origin + path, data=body, headers=sent, timeout=30)
        return answer.status_code, answer.headers.get("Content-Type", ""), answer.content

    def genuine(self, method: str, path: str, body: bytes) -> tuple[str, bytes]:
        _, kind, payload = self.forward(method, path, body, {})
        return kind, payload

    def misbehave(
        self, handler: http.server.BaseHTTPRequestHandler, rule: Hostile, method: str, body: bytes
    ) -> None:
        mode = rule.mode
        if mode == "html200":
            _send(handler, 200, "text/html", MAINTENANCE)
        elif mode == "empty":
            _send(handler, 200, "application/json", b"")
        elif mode == "drip":
            self._drip(handler)
        elif mode == "stall":
            self._stall(handler)
        elif mode in ZIP_MODES:
            _send(handler, 200, "application/octet-stream", self._hostile_zip(rule, handler.path))
        else:
            kind, payload = self.genuine(method, handler.path, body)
            if mode == "huge_field":
                _send(handler, 200, kind, _splice_huge(payload))
            elif mode == "length_long":
                _send(handler, 200, kind, payload, length=len(payload) + 1000)
                handler.close_connection = True
            elif mode == "length_short":
                _send(handler, 200, kind, payload, length=len(payload) // 2)
                handler.close_connection = True
            else:  # reset
                _reset(handler, kind, payload)

    def _drip(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.dripping += 1
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(1 << 30))
        handler.end_headers()
        handler.close_connection = True
        give_up = time.monotonic() + self.drip_for
        try:
            while time.monotonic() < give_up:
                handler.wfile.write(b"PK" + b"\0" * 62)
                handler.wfile.flush()
                time.sleep(self.drip_interval)
        except OSError:
            return  # the client gave up: exactly what a drip must lead to
        finally:
            with self._lock:
                self.dripping -= 1

    def _stall(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.dripping += 1
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(1 << 30))
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.settimeout(self.drip_for)
        try:
            handler.connection.recv(1)  # b"" (or a reset) when the client hangs up
        except OSError:
            pass
        finally:
            with self._lock:
                self.dripping -= 1

    def _hostile_zip(self, rule: Hostile, path: str) -> bytes:
        if rule.mode == "wrong_series":
            assert rule.other_series_uid is not None
            path = path.replace(str(rule.series_uid), rule.other_series_uid)
        _, genuine = self.genuine("GET", path, b"")
        return hostile_zip(rule.mode, genuine)


def _send(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    kind: str,
    payload: bytes,
    length: int | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(payload) if length is None else length))
    handler.end_headers()
    try:
        handler.wfile.write(payload)
    except OSError:
        return


def _reset(handler: http.server.BaseHTTPRequestHandler, kind: str, payload: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload[: len(payload) // 2])
    handler.wfile.flush()
    # SO_LINGER with a zero timeout turns close() into a TCP reset.
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    handler.connection.close()


def _splice_huge(payload: bytes) -> bytes:
    """The answer with a 128 KiB run of ``A`` inside its first value, whatever its format."""
    text = payload.decode("utf-8", "replace")
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        data = json.loads(text)
        rows = data if isinstance(data, list) else [data]
        if rows and isinstance(rows[0], dict) and rows[0]:
            first = next(iter(rows[0]))
            rows[0][first] = "A" * HUGE
        return json.dumps(data).encode()
    return ("A" * HUGE + text).encode()


# -- hostile ZIPs ------------------------------------------------------------------------------


def _members(genuine: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(genuine)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _csv_of(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Filename", "MD5Hash"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _csv_rows(data: bytes) -> list[tuple[str, str]]:
    rows = list(csv.reader(io.StringIO(data.decode())))
    return [(r[0], r[1]) for r in rows[1:] if r]


def _build(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # "Duplicate name": the point of one mode
        for info, data in members:
            if isinstance(info, zipfile.ZipInfo):
                fresh = zipfile.ZipInfo(info.filename, info.date_time)
                fresh.compress_type = zipfile.ZIP_DEFLATED
                fresh.create_system, fresh.external_attr = info.create_system, info.external_attr
                info = fresh
            archive.writestr(info, data)
    return out.getvalue()


def hostile_zip(mode: str, genuine: bytes) -> bytes:
    """The genuine series ZIP turned hostile in ``mode`` (one of ``ZIP_MODES``)."""
    members = _members(genuine)
    images = [(i, d) for i, d in members if i.filename not in ("md5hashes.csv", "LICENSE")]
    listing = next(d for i, d in members if i.filename == "md5hashes.csv")
    first = images[0][0].filename
    if mode == "wrong_series":
        return genuine
    if mode == "traversal":
        escaped = "../../escaped.dcm"
        renamed: list[tuple[zipfile.ZipInfo | str, bytes]] = [
            (escaped if i.filename == first else i, d) for i, d in members
        ]
        rows = [(escaped if n == first else n, h) for n, h in _csv_rows(listing)]
        return _build(
            [(i, _csv_of(rows) if _name(i) == "md5hashes.csv" else d) for i, d in renamed]
        )
    if mode == "symlink":
        link = zipfile.ZipInfo("link.dcm")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        return _build([*members, (link, b"/etc/passwd")])
    if mode == "duplicate":
        return _build([*members[:-1], images[0], members[-1]])
    if mode == "csv_huge":
        rows = _csv_rows(listing)
        rows[0] = (rows[0][0], "f" * HUGE)
        return _build(
            [(i, _csv_of(rows) if i.filename == "md5hashes.csv" else d) for i, d in members]
        )
    if mode == "bomb":
        return _raw_bomb(members, declared=4_000_000_000, zeros=1 << 20, replace=None)
    if mode == "bomb_lying":
        return _raw_bomb(members, declared=1024, zeros=64 << 20, replace=first)
    raise ValueError(f"not a ZIP mode: {mode}")


def _name(info: zipfile.ZipInfo | str) -> str:
    return info if isinstance(info, str) else info.filename


@functools.lru_cache(maxsize=4)
def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """Raw deflate of ``size`` zero bytes, made in 1 MiB steps (never held whole), and CRC."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    parts, crc = [], 0
    for _ in range(size // len(block)):
        parts.append(squeeze.compress(block))
        crc = zlib.crc32(block, crc)
    parts.append(squeeze.flush())
    return b"".join(parts), crc


def _raw_bomb(
    members: list[tuple[zipfile.ZipInfo, bytes]], *, declared: int, zeros: int, replace: str | None
) -> bytes:
    """A ZIP written by hand, so one member can declare a size its data does not have."""
    bomb, crc = _deflated_zeros(zeros)
    entries: list[tuple[str, int, bytes, int, int]] = []  # name, method, data, crc, size
    for info, data in members:
        if info.filename == replace:
            entries.append((info.filename, 8, bomb, crc, declared))
        else:
            entries.append((info.filename, 0, data, zlib.crc32(data), len(data)))
    if replace is None:
        entries.insert(0, ("zeros.dcm", 8, bomb, crc, declared))
    return _raw_zip(entries)


def _raw_zip(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    out = io.BytesIO()
    central = io.BytesIO()
    for name, method, data, crc, size in entries:
        encoded = name.encode()
        offset = out.tell()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
            )
        )
        out.write(encoded + data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        central.write(encoded)
    start = out.tell()
    directory = central.getvalue()
    out.write(directory)
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), start, 0
        )
    )
    return out.getvalue()

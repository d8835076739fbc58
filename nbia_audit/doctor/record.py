"""``doctor --record DIR``: what the archive was asked and answered, fit to attach to a report.

Secrets never reach the disk: ``Authorization`` and cookie headers, credential and token
fields of forms and of Keycloak's JSON are replaced by ``<removed>``, and as a last guard every
secret the run handled (password, access, refresh and id tokens) is cut out of every byte
written, wherever it appears. Each file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nbia_audit.doctor.http import Exchange
from nbia_audit.doctor.run import DoctorReport
from nbia_audit.errors import StoreError
from nbia_audit.report.file import write_report

__all__ = ["REMOVED", "write_record"]

REMOVED = "<removed>"
_SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
_SECRET_FIELDS = frozenset(
    {
        "username",
        "password",
        "client_secret",
        "refresh_token",
        "access_token",
        "id_token",
        "session_state",
    }
)
_INLINE_LIMIT = 256 * 1024  # larger or binary bodies go to their own file


def write_record(
    directory: Path, report: DoctorReport, exchanges: Iterable[Exchange], secrets: Iterable[str]
) -> list[Path]:
    """Write ``report.json``, ``exchanges.json`` and ``bodies/*`` under ``directory``.

    Raises:
        StoreError: the directory or a file cannot be written.
    """
    hidden = sorted({s for s in secrets if s}, key=len, reverse=True)
    bodies = directory / "bodies"
    try:
        bodies.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{directory}: cannot create the record ({exc.strerror})") from None
    written: list[Path] = []
    entries: list[dict[str, Any]] = []
    for exchange in exchanges:
        entry = _entry(exchange)
        body = _scrub_bytes(exchange.body, hidden)
        text = _inline_text(exchange, body)
        if text is not None:
            entry["body"] = _redact_json_text(text)
        elif body:
            name = f"{exchange.number:03d}-{_safe(exchange.endpoint)}.bin"
            path = bodies / name
            _write_bytes(path, body)
            written.append(path)
            entry["body_file"] = f"bodies/{name}"
            entry["body_sha256"] = hashlib.sha256(body).hexdigest()
            entry["body_bytes"] = len(body)
        entries.append(entry)
    for name, data in (("exchanges.json", entries), ("report.json", report.to_json())):
        path = directory / name
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        write_report(path, _scrub_text(text, hidden))
        written.append(path)
    return written


def _entry(exchange: Exchange) -> dict[str, Any]:
    return {
        "number": exchange.number,
        "method": exchange.method,
        "url": _redact_url(exchange.url),
        "endpoint": exchange.endpoint,
        "request_headers": _headers(exchange.request_headers),
        "form": [[k, REMOVED if k.lower() in _SECRET_FIELDS else v] for k, v in exchange.form],
        "status": exchange.status,
        "error": exchange.error,
        "response_headers": _headers(exchange.response_headers),
    }


def _headers(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    return [[k, REMOVED if k.lower() in _SECRET_HEADERS else v] for k, v in pairs]


def _redact_url(url: str) -> str:
    base, _, query = url.partition("?")
    if not query:
        return url
    parts = []
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        parts.append(f"{name}={REMOVED}" if name.lower() in _SECRET_FIELDS else pair)
    return f"{base}?{'&'.join(parts)}"


def _inline_text(exchange: Exchange, body: bytes) -> str | None:
    content_type = dict((k.lower(), v) for k, v in exchange.response_headers).get(
        "content-type", ""
    )
    if len(body) > _INLINE_LIMIT or "zip" in content_type or "octet-stream" in content_type:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _redact_json_text(text: str) -> str:
    """Keycloak's token JSON keeps its shape; the token values are removed."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    if isinstance(decoded, dict) and _SECRET_FIELDS & set(decoded):
        redacted = {k: REMOVED if k in _SECRET_FIELDS else v for k, v in decoded.items()}
        return json.dumps(redacted, ensure_ascii=False)
    return text


def _scrub_text(text: str, hidden: list[str]) -> str:
    for secret in hidden:
        text = text.replace(secret, REMOVED)
    return text


def _scrub_bytes(data: bytes, hidden: list[str]) -> bytes:
    for secret in hidden:
        data = data.replace(secret.encode("utf-8"), REMOVED.encode("ascii"))
    return data


def _safe(endpoint: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in endpoint)[:60]


def _write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot write the record ({exc.strerror})") from None

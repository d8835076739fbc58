"""Keep secrets out of every message: the one function server text passes through.

A server, or a proxy in front of it, may echo what it was sent: the ``Authorization`` header
(the access token), the token form (the password, URL-encoded), a refresh token, a Basic
header (``user:password`` in base64), all possibly inside JSON. Any of that text can reach an
exception message, a log record or a report, so every place where server text enters one
calls :func:`excerpt` (or :func:`redact`), which removes each known secret in each of those
encodings.

The secrets are registered here by :class:`~nbia_audit.client.auth.TokenManager` as it learns
them. The registry is process-wide on purpose: server text is turned into messages in layers
that never see the token (transport, parsers, the zip checker), and redacting a secret of
another client in the same process is harmless, while missing one is not.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "excerpt", "forget_all", "redact", "remember", "remember_login"]

MASK = "***"

_MIN_SECRET = 4
"""Shorter "secrets" (an empty guest password, "x") would mangle ordinary words if masked."""

_KEPT = 256
"""How many secrets are remembered: every token a long run refreshes, with room to spare."""

_SCAN_LIMIT = 64 * 1024
"""Characters of server text considered at all; an excerpt shows far fewer."""

_lock = threading.Lock()
_forms: OrderedDict[str, None] = OrderedDict()  # every encoding of every secret, oldest first


_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _lower_escapes(text: str) -> str:
    """``%2F`` as ``%2f``: some encoders write lower-case escapes; the secret's letters keep
    their case."""
    return _PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), text)


def _encodings(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    json_escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),  # "/" left as is
        quote_plus(secret),
        _lower_escapes(quote(secret, safe="")),
        _lower_escapes(quote_plus(secret)),
        json_escaped,
        json_escaped.replace("/", "\\/"),  # encoders that escape the solidus
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        base64.b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii"),
        base64.b64encode(raw).decode("ascii").rstrip("="),
    }
    return {form for form in forms if len(form) >= _MIN_SECRET}


def remember(*secrets: str | None) -> None:
    """Register secrets (tokens, a password) so :func:`redact` removes them everywhere."""
    with _lock:
        for secret in secrets:
            if secret is None or len(secret) < _MIN_SECRET:
                continue
            for form in _encodings(secret):
                _forms[form] = None
                _forms.move_to_end(form)
        while len(_forms) > _KEPT * 10:
            _forms.popitem(last=False)


def remember_login(username: str, password: str) -> None:
    """Register a password, and ``user:password`` as a Basic header carries it."""
    if len(password) < _MIN_SECRET:
        return
    remember(password, f"{username}:{password}")


def forget_all() -> None:
    """Drop every registered secret (for tests)."""
    with _lock:
        _forms.clear()


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every registered secret (and ``extra``) masked, in every encoding."""
    with _lock:
        forms = set(_forms)
    for secret in extra:
        if secret is not None and len(secret) >= _MIN_SECRET:
            forms |= _encodings(secret)
    # Longest first: a token's base64 or URL form may contain a shorter secret's plain form.
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return text


def excerpt(body: bytes | str, limit: int = 200, extra: Iterable[str | None] = ()) -> str:
    """A short, printable, redacted excerpt of server text for a message ("" when blank).

    Secrets are masked before the text is shortened, so a cut can never leave part of one;
    whitespace runs become one space and other control characters are shown escaped, so a
    server cannot move the cursor or forge lines in a terminal or a log.
    """
    if isinstance(body, bytes):
        text = body[: _SCAN_LIMIT * 4].decode("utf-8", errors="replace")
    else:
        text = body
    text = redact(text[:_SCAN_LIMIT], extra)
    text = " ".join(text.split())
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return shown if len(shown) <= limit else shown[:limit] + "…"

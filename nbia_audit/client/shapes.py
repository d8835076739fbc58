"""The documented shape of each archive answer, checked before anything uses it.

A proxy's maintenance page, a truncated body or a server bug can arrive with status 200. Such
an answer must never become a series hash in a lock or an image's "short" MD5, so every hash
and listing is checked here against what NBIA is documented to send (protocol §1.1, §2.3,
§2.4, §3, §5), and anything else raises :class:`~nbia_audit.errors.ApiProtocolError` with a
short, printable, redacted excerpt. The caller (``core.EndpointGroup``) retries such an
answer like any transient fault before it reports it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence

from nbia_audit.client.redact import excerpt
from nbia_audit.errors import ApiProtocolError

__all__ = [
    "CSV_FIELD_LIMIT",
    "MD5_CSV_HEADER",
    "bounded_csv_rows",
    "hierarchy_hash",
    "image_md5",
    "is_uid",
    "md5_csv",
    "unexpected",
]

_HIERARCHY = re.compile(r"[0-9a-f]{32}")
"""``getMD5Hierarchy``: MD5 formatted with ``%032x`` (protocol §1.3)."""

_STORED_MD5 = re.compile(r"[0-9a-fA-F]{1,32}")
"""A stored per-image MD5: hex, 32 digits or fewer when CTP dropped leading zeros (§3). The
column's collation ignores case, so an upper-case value is stored data, not garbage."""

_NO_DIGEST = ("", " ")
"""NULL (empty answer) and CTP's single space for "no digest" (protocol §3)."""

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX = 64

CSV_FIELD_LIMIT = 4096
"""Longest CSV field believed: file names, UIDs, dates and MD5s are far shorter, and a
larger field must be a problem to report, not a ``_csv.Error`` traceback."""

MD5_CSV_HEADER = ("Filename", "MD5Hash")
"""The header of ``md5hashes.csv`` (``FormatOutput#toCsv``, protocol §2.3)."""


def unexpected(
    endpoint: str, expected: str, body: bytes | str, status: int = 200
) -> ApiProtocolError:
    """The error for an answer that is not what ``endpoint`` documents."""
    shown = excerpt(body, 120) or "an empty body"
    return ApiProtocolError(
        f"{endpoint}: the server answered HTTP {status} with something that is not "
        f"{expected}: {shown!r}"
    )


def hierarchy_hash(body: bytes, endpoint: str) -> str:
    """The ``getMD5Hierarchy`` answer: 32 lower-case hex digits, or "" for "not found".

    Raises:
        ApiProtocolError: anything else (an HTML page, a truncated hash, a trailing newline).
    """
    text = _ascii(body, endpoint, "a hierarchy hash (32 hex digits or empty)")
    if text == "" or _HIERARCHY.fullmatch(text):
        return text
    raise unexpected(endpoint, "a hierarchy hash (32 hex digits or empty)", body)


def image_md5(body: bytes, endpoint: str) -> str:
    """A per-image MD5 answer, verbatim: hex of up to 32 digits, " " (CTP) or "" (none).

    Raises:
        ApiProtocolError: anything else.
    """
    expected = "a stored image MD5 (up to 32 hex digits, a space or empty)"
    text = _ascii(body, endpoint, expected)
    if text in _NO_DIGEST or _STORED_MD5.fullmatch(text):
        return text
    raise unexpected(endpoint, expected, body)


def is_uid(text: str) -> bool:
    """True for a DICOM UID: digits in dot-separated components, at most 64 characters."""
    return len(text) <= _UID_MAX and _UID.fullmatch(text) is not None


def bounded_csv_rows(text: str, source: str) -> Iterator[list[str]]:
    """Yield the rows of a CSV, refusing fields over :data:`CSV_FIELD_LIMIT` and NUL bytes.

    Raises:
        ApiProtocolError: a field is too long or the CSV is malformed (``source`` and the line
            are named; the message shows a short excerpt only).
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The csv module's own limit (128 KiB) or a NUL byte: say where, not a traceback.
            raise ApiProtocolError(
                f"{source} is not a readable CSV (line {reader.line_num}: {excerpt(str(exc), 80)})"
            ) from exc
        for field in row:
            if len(field) > CSV_FIELD_LIMIT:
                raise ApiProtocolError(
                    f"{source} is not a readable CSV (line {reader.line_num} has a "
                    f"{len(field)}-character field, more than the {CSV_FIELD_LIMIT} any "
                    f"documented field needs: {excerpt(field, 40)!r})"
                )
        yield row


def md5_csv(text: str, source: str = "md5hashes.csv") -> dict[str, str | None]:
    """Read ``md5hashes.csv``: ``{member name: stored MD5 verbatim, or None when empty}``.

    The header must be exactly ``Filename,MD5Hash``; each row two fields, a name listed once,
    and an MD5 of the stored shape (protocol §2.3, §3).

    Raises:
        ApiProtocolError: the CSV breaks any of these rules.
    """
    rows = bounded_csv_rows(text, source)
    header = next(rows, None)
    if header is None or tuple(header) != MD5_CSV_HEADER:
        raise ApiProtocolError(
            f"{source} does not start with the header 'Filename,MD5Hash' (protocol §2.3)"
        )
    listed: dict[str, str | None] = {}
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 2 or row[0] in listed:
            raise ApiProtocolError(
                f"{source} line {number} is malformed or repeats a name: {_row_excerpt(row)}"
            )
        name, md5 = row
        if md5 not in _NO_DIGEST and not _STORED_MD5.fullmatch(md5):
            raise ApiProtocolError(
                f"{source} line {number}: {excerpt(md5, 40)!r} is not a stored MD5 "
                "(up to 32 hex digits, a space or empty)"
            )
        listed[name] = md5 or None  # an empty field is a NULL md5_digest (§2.3)
    return listed


def _row_excerpt(row: Sequence[str]) -> str:
    return repr(excerpt(",".join(row), 80))


def _ascii(body: bytes, endpoint: str, expected: str) -> str:
    if len(body) > 64:  # no documented hash answer is longer; do not decode a page
        raise unexpected(endpoint, expected, body)
    try:
        return body.decode("ascii")
    except UnicodeDecodeError:
        raise unexpected(endpoint, expected, body) from None

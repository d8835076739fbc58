"""NBIA's output formats, byte for byte where it matters (protocol §5, ``UTIL/FormatOutput``).

Rows are tuples of Python values standing for what the DAO hands to ``FormatOutput``:
``str``, ``int``, ``bool``, ``Decimal`` (MySQL ``decimal(22,6)`` columns: JSON strips the
trailing zeros, CSV prints Java's ``BigDecimal.toString()`` such as ``300.000000``) or ``None``
(omitted from JSON, like Jettison's ``put(key, null)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

Value = str | int | bool | Decimal | None
Row = tuple[Value, ...]

GENERIC_ERROR = "Server was not able to process your request"
# UncaughtException mapper: "<generic>\n" + exception.getMessage(); an NPE's message is null.
# The live archive's 48-byte 500 body (real-samples/errors__1) is exactly this text.
NPE_ERROR = GENERIC_ERROR + "\nnull"
MANIFEST_TYPE = "application/x-nbia-manifest-file"


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: a body, or a ``stream`` writer for chunked downloads."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    stream: Callable[[Any], None] | None = field(default=None, compare=False)


def text(status: int, message: str, content_type: str | None = None) -> Response:
    """A plain message body (NBIA's 400s are plain text even when labelled JSON)."""
    return Response(status, message.encode("utf-8"), content_type)


def bad_request(message: str) -> Response:
    """NBIA's 400: a plain-text message labelled ``application/json`` (protocol §2.1, §5)."""
    return text(400, message, "application/json")


def empty() -> Response:
    """``Response.ok().build()``: 200 with an empty body and no content type."""
    return Response(200)


def server_error(message: str = NPE_ERROR) -> Response:
    """The UncaughtException mapper's 500."""
    return text(500, message, "text/plain")


# -- Java value rendering ------------------------------------------------------------------
def java_timestamp(value: datetime | date | None) -> str | None:
    """``java.sql.Timestamp.toString()``: ``2015-05-27 17:12:21.0`` (v1/v2 JSON dates)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    nanos = f"{value.microsecond * 1000:09d}".rstrip("0") or "0"
    return value.strftime("%Y-%m-%d %H:%M:%S.") + nanos


def mdy(value: datetime | date | None) -> str | None:
    """SQL ``date_format(x, '%m-%d-%Y')`` (v4 dates)."""
    return value.strftime("%m-%d-%Y") if value is not None else None


def java_date_string(value: datetime | date | None) -> str | None:
    """``java.util.Date.toString()`` in UTC: ``Mon Nov 04 11:45:52 UTC 2013``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.strftime("%a %b %d %H:%M:%S UTC %Y")


def decimal6(value: float | int | None) -> Decimal | None:
    """A MySQL ``decimal(22,6)`` value."""
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.000001"))


def _java_str(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_value(value: Value) -> Value | float:
    # Jettison numberToString strips trailing zeros of decimals: 3.000000 -> 3.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _dumps(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_array(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """``FormatOutput.toJSONArray`` (Jettison 1.1): column order, no nulls, ``/`` as ``\\/``."""
    out = [
        {c: _json_value(v) for c, v in zip(columns, row, strict=True) if v is not None}
        for row in rows
    ]
    # Jettison's quote() escapes every slash; a slash can only occur inside a JSON string.
    return _dumps(out).replace(b"/", b"\\/")


def json_body(data: object) -> bytes:
    """Compact JSON as NBIA's serialisers write it."""
    return _dumps(data)


def csv_plain(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """``FormatOutput.toCsv``: unquoted, LF, a null is an empty field (md5hashes.csv too)."""
    lines = [",".join(columns)]
    lines += [",".join("" if v is None else _java_str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def csv_quoted(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """``FormatOutput.toCsvQuoted``, including its bug for a null first column.

    Each field is opened with ``"`` (first) or ``","`` (others), and a null field writes
    ``","`` whatever its position: in the first column that yields a malformed row.
    """
    parts = ['"' + '","'.join(c.replace('"', '""') for c in columns) + '"\n']
    for row in rows:
        for i, value in enumerate(row):
            if value is None:
                parts.append('","')
            else:
                parts.append(('","' if i else '"') + _java_str(value).replace('"', '""'))
        parts.append('"\n')
    return "".join(parts).encode("utf-8")


def _html_escape(value: str) -> str:
    # ESAPI encodeForHTML: alphanumerics and " ,.-_" pass, everything else becomes an entity.
    named = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
    return "".join(
        c if c.isalnum() or c in " ,.-_" else named.get(c, f"&#x{ord(c):x};") for c in value
    )


def html_table(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """``FormatOutput.toHtml``."""
    out = ["<P ALIGN='center'><TABLE BORDER=1><TR>"]
    out += [f"<TH>{c}</TH>" for c in columns]
    out.append("</TR>")
    for row in rows:
        out.append("<TR>")
        for v in row:
            cell = (
                "&nbsp;" if v is None else (_html_escape(v) if isinstance(v, str) else _java_str(v))
            )
            out.append(f"<TD>{cell}</TD>")
        out.append("</TR>")
    out.append("</TABLE></P>")
    return "".join(out).encode("utf-8")


_JAVA_TYPES = {str: "java.lang.String", bool: "java.lang.Boolean", int: "java.math.BigInteger"}


def xml_rows(columns: Sequence[str], rows: Sequence[Row]) -> bytes:
    """``FormatOutput.toXml``: nulls omitted, each value tagged with its Java type."""
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Results>']
    for row in rows:
        out.append("<Row>")
        for c, v in zip(columns, row, strict=True):
            if v is None:
                continue
            kind = _JAVA_TYPES.get(type(v), "java.math.BigDecimal")
            cell = _html_escape(v) if isinstance(v, str) else _java_str(v)
            out.append(f"<{c} type='{kind}'>{cell}</{c}>")
        out.append("</Row>")
    out.append("</Results>")
    return "".join(out).encode("utf-8")


def format_rows(fmt: str | None, columns: Sequence[str], rows: Sequence[Row]) -> Response:
    """``getData.formatResponse`` for multi-column results.

    An empty result is 200 with an empty body *before* the format is even looked at, so an
    unknown format only fails (500) when there are rows.
    """
    if not rows:
        return empty()
    kind = (fmt or "JSON").upper()
    if kind == "JSON":
        return Response(200, json_array(columns, rows), "application/json")
    if kind == "HTML":
        return Response(200, html_table(columns, rows), "text/html")
    if kind == "XML":
        return Response(200, xml_rows(columns, rows), "application/xml")
    if kind in ("CSV", "CSVQUOTED"):
        return Response(200, csv_quoted(columns, rows), "text/csv")
    if kind == "CSV-DOWNLOAD":
        disposition = ("Content-Disposition", 'attachment; filename="SeriesMetaData.csv"')
        return Response(200, csv_quoted(columns, rows), "text/csv", (disposition,))
    return text(500, GENERIC_ERROR)


def format_values(fmt: str | None, column: str, values: Sequence[str | None]) -> Response:
    """``getData.formatResponse`` for single-column lists (``getCollectionValues`` ...)."""
    if not values:
        return empty()
    rows: list[Row] = [(v,) for v in values]
    kind = (fmt or "JSON").upper()
    if kind == "JSON":
        return Response(200, json_array((column,), rows), "application/json")
    if kind == "HTML":
        return Response(200, html_table((column,), rows), "text/html")
    if kind == "XML":
        return Response(200, xml_rows((column,), rows), "application/xml")
    if kind == "CSV":
        return Response(200, csv_plain((column,), rows), "text/csv")
    if kind == "CSV-DOWNLOAD":
        disposition = ("Content-Disposition", 'attachment; filename="SeriesMetaData.csv"')
        return Response(
            200, csv_plain((column,), rows), "application/force-download", (disposition,)
        )
    return text(500, GENERIC_ERROR)


def manifest(
    series_uids: Sequence[str],
    include_annotation: str,
    basket_id: str,
    download_server_url: str,
) -> bytes:
    """``ManifestMaker.getManifextFromSeriesIds``: the ``.tcia`` 3.0 layout (protocol §6.1)."""
    lines = [
        f"downloadServerUrl={download_server_url}",
        f"includeAnnotation={'true' if include_annotation.lower() == 'true' else 'false'}",
        "noOfrRetry=4",
        f"databasketId={basket_id}",
        "manifestVersion=3.0",
        "ListOfSeriesToDownload=",
        *series_uids,
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def invalid_parameter(kind: str, name: str, allowed: Sequence[str]) -> Response:
    """v4's strict parameter check (``kind`` is ``query`` or ``form``).

    Java prints the ``Set.of(...)`` with ``AbstractCollection.toString``; its iteration order
    is randomised per JVM, so we print the declaration order.
    """
    message = f"Invalid {kind} parameter: '{name}'. Allowed parameters are: [{', '.join(allowed)}]"
    return text(400, message)

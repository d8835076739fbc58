"""One escaping function per output format, for every string that reaches one.

Archive strings (descriptions, DOIs, license names) and file names in a copy are not ours:
they may hold ``<script>``, Markdown syntax, control characters, ANSI escape sequences,
characters XML 1.0 forbids, lone surrogates (a string the lock kept verbatim) or bytes that
are not UTF-8 (Python reads such a file name with ``surrogateescape``: byte 0xFF becomes
U+DCFF). Each output format gets exactly one function here, and every renderer passes every
such string through it:

* :func:`for_terminal`: text reports and error messages (no control character, no escape
  sequence, no bidirectional override reaches a terminal);
* :func:`for_json`: strings in JSON documents (``json.dumps`` escapes control characters;
  lone surrogates are not valid Unicode, so strict JSON readers would refuse them);
* :func:`for_xml`: JUnit XML text and attributes (XML 1.0 forbids most C0 characters);
* :func:`for_markdown`: one line of Markdown (no HTML, no links, no table breaks, no code
  spans, no line-start syntax);
* :func:`for_html`: HTML text and attribute values.

A character that cannot be shown is written as a visible escape: a byte that is not UTF-8
as ``\\xNN`` (the byte), a control character as ``\\n``, ``\\t``, ``\\r`` or ``\\xNN``, any
other as ``\\uNNNN``; so a file name is reported as it is on disk, readably.
"""

from __future__ import annotations

import html
import re

__all__ = [
    "for_html",
    "for_json",
    "for_markdown",
    "for_terminal",
    "for_xml",
    "json_safe",
    "visible",
]

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def visible(char: str) -> str:
    """The visible escape of one character."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as surrogateescape keeps it
        return f"\\x{code - 0xDC00:02x}"
    if char in _NAMED:
        return _NAMED[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _show(match: re.Match[str]) -> str:
    return visible(match.group())


_SURROGATES = "\ud800-\udfff"
# C0 controls (ESC starts every ANSI sequence), DEL, C1 controls (0x9B is a one-character
# CSI), the bidirectional marks and overrides ("Trojan Source"), and lone surrogates.
_CONTROLS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_TERMINAL = re.compile(f"[{_CONTROLS}{_SURROGATES}]")
_JSON = re.compile(f"[{_SURROGATES}]")
# XML 1.0 Char excludes C0 but tab, LF, CR; surrogates; U+FFFE, U+FFFF. C1 and ESC-free
# text is also what a terminal shows when someone prints the file.
_XML = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SURROGATES}\ufffe\uffff]")
# Inline syntax anywhere; block syntax (heading, quote, list, rule) only at a line's start.
_MARKDOWN_INLINE = re.compile(r"([\\`*_{}\[\]()<>|~&$!])")
_MARKDOWN_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+\.)")


def for_terminal(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with nothing a terminal would act on: control characters (so no ANSI escape
    sequence), bidirectional overrides and undecodable bytes become visible escapes.
    ``keep_newlines``: line breaks stay (a message of several lines we wrote ourselves)."""
    if keep_newlines:
        return "\n".join(_TERMINAL.sub(_show, line) for line in text.split("\n"))
    return _TERMINAL.sub(_show, text)


def for_json(text: str) -> str:
    """``text`` as valid Unicode for a JSON string (``json.dumps`` escapes the rest)."""
    return _JSON.sub(_show, text)


def for_xml(text: str) -> str:
    """``text`` with only characters XML 1.0 allows (ElementTree escapes ``<&>"``)."""
    return _XML.sub(_show, text)


def for_markdown(text: str) -> str:
    """``text`` as literal inline Markdown on one line, safe in a table cell.

    Every character Markdown or its HTML could act on is backslash-escaped (CommonMark
    shows an escaped ASCII punctuation character literally): no tag, link, emphasis, code
    span, table-cell break or heading can come from the text.
    """
    inline = _MARKDOWN_INLINE.sub(r"\\\1", _TERMINAL.sub(_show, text))
    return _MARKDOWN_LINE_START.sub(_escape_line_start, inline)


def _escape_line_start(match: re.Match[str]) -> str:
    lead, mark = match.group(1), match.group(2)
    if mark.endswith("."):  # "1." opens an ordered list ("1)" is escaped inline already)
        return lead + mark[:-1] + "\\."
    return lead + "\\" + mark


def for_html(text: str) -> str:
    """``text`` as HTML text or a quoted attribute value."""
    return html.escape(_TERMINAL.sub(_show, text), quote=True)


def json_safe(value: object) -> object:
    """``value`` (JSON-ready data) with :func:`for_json` applied to every string in it."""
    # A report can hold a million strings: ASCII (nearly all of them) is returned as is.
    if isinstance(value, str):
        return value if value.isascii() else _JSON.sub(_show, value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value

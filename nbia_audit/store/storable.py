"""Archive strings made storable: any Python string through TOML and SQLite and back.

The archive's JSON may carry a lone UTF-16 surrogate (``"\\ud835"`` without its partner).
Python keeps it in a ``str``, but neither TOML (whose strings are Unicode scalar values) nor
SQLite (UTF-8) can hold it. Rather than lose or replace it, both stores write such strings
through a reversible escape, so every archive string round-trips exactly:

* ``ESCAPE`` (U+10FFFF, a noncharacter no archive has reason to send) is written twice;
* a lone surrogate ``U+D800 + n`` is written as ``ESCAPE`` followed by ``U+100000 + n``.

Strings without either (all real-world strings) are stored verbatim, so a lock stays
readable by any TOML reader and any SQLite tool.
"""

from __future__ import annotations

import re

__all__ = ["from_storable", "to_storable"]

ESCAPE = "\U0010ffff"
_SURROGATE_FIRST, _SURROGATE_LAST = 0xD800, 0xDFFF
_PLANE16 = 0x100000


_NEEDS_ESCAPE = re.compile("[\ud800-\udfff\U0010ffff]")


def _needs_escape(text: str) -> bool:
    return _NEEDS_ESCAPE.search(text) is not None


def to_storable(text: str) -> str:
    """``text`` as a string of Unicode scalar values, reversible with :func:`from_storable`."""
    if not _needs_escape(text):
        return text
    out = []
    for char in text:
        code = ord(char)
        if char == ESCAPE:
            out.append(ESCAPE + ESCAPE)
        elif _SURROGATE_FIRST <= code <= _SURROGATE_LAST:
            out.append(ESCAPE + chr(_PLANE16 + code - _SURROGATE_FIRST))
        else:
            out.append(char)
    return "".join(out)


def from_storable(text: str) -> str:
    """Undo :func:`to_storable`.

    Raises:
        ValueError: ``text`` holds an escape that :func:`to_storable` never writes.
    """
    if ESCAPE not in text:
        return text
    out = []
    chars = iter(text)
    for char in chars:
        if char != ESCAPE:
            out.append(char)
            continue
        follower = next(chars, "")
        offset = ord(follower) - _PLANE16 if follower else -1
        if follower == ESCAPE:
            out.append(ESCAPE)
        elif 0 <= offset <= _SURROGATE_LAST - _SURROGATE_FIRST:
            out.append(chr(_SURROGATE_FIRST + offset))
        else:
            raise ValueError("a stored string holds an escape nbia-audit does not write")
    return "".join(out)

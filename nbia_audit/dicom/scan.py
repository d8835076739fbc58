"""A fast, strict reader of DICOM element headers: identity from the first block, truncation.

``verify`` reads the identity of every file it checks. pydicom parses a header in about
200 µs, a quarter of the time MD5 needs for a 0.5 MB slice, and holds the GIL while doing
it, so on two cores it would cost a quarter of the throughput. This module walks the
element headers of the common encodings (explicit and implicit VR little endian, which
also covers every compressed transfer syntax) straight from the bytes already read for
hashing. Whenever it meets anything it does not handle (big endian, deflate, a header
longer than the block, an odd structure) it answers ``None`` and the caller asks
:func:`nbia_audit.dicom.header.read_identity`, so its answers never differ from pydicom's;
tests compare the two over pydicom's own test files.

The same walker, run over a whole file with positioned reads, finds truncation: a value
or sequence that runs past the end of the file (the issue counts a truncated image as
``unreadable``, not merely ``modified``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from nbia_audit.dicom.header import DicomIdentity

__all__ = ["scan_identity", "truncation"]

_PREAMBLE = 128
_MAGIC = b"DICM"
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UR", b"UT", b"UN", b"UV"}
)
_IMPLICIT_LE = "1.2.840.10008.1.2"
# Big endian and deflated datasets are left to pydicom.
_UNHANDLED = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_WANTED = {
    0x00080018: "sop_uid",
    0x00100020: "patient_id",
    0x0020000D: "study_uid",
    0x0020000E: "series_uid",
}
_LAST_WANTED = 0x0020000E
_MAX_DEPTH = 16
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
     b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)  # fmt: skip
_EXPLICIT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")


class _Short(Exception):
    """The bytes end inside a structure (a block too short, or a truncated file)."""


class _Odd(Exception):
    """A structure this reader does not handle; the caller falls back to pydicom."""


Reader = Callable[[int, int], bytes]


class _Walker:
    """Element headers over ``read(offset, n)``, which returns fewer bytes only at the end."""

    def __init__(self, read: Reader, size: int | None) -> None:
        self.read = read
        self.size = size  # known file size, or None for an in-memory block

    def exact(self, offset: int, n: int) -> bytes:
        data = self.read(offset, n)
        if len(data) != n:
            raise _Short(f"the file ends at byte {offset + len(data)} inside an element header")
        return data

    def header(self, offset: int, explicit: bool) -> tuple[int, bytes, int, int]:
        """Return (tag, vr, value length, value offset) of the element at ``offset``."""
        raw = self.exact(offset, 8)
        group, element = _TAG.unpack_from(raw)
        tag = group << 16 | element
        if tag in (_ITEM, _ITEM_END, _SEQ_END) or not explicit:
            return tag, b"", _U32.unpack_from(raw, 4)[0], offset + 8
        vr = raw[4:6]
        if vr in _LONG_VRS:
            return tag, vr, _U32.unpack_from(self.exact(offset + 8, 4))[0], offset + 12
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Odd(f"element ({group:04X},{element:04X}) has no valid VR")
        return tag, vr, _U16.unpack_from(raw, 6)[0], offset + 8

    def skip_value(
        self, tag: int, vr: bytes, length: int, start: int, explicit: bool, depth: int = 0
    ) -> int:
        """Return the offset just past the value that starts at ``start``."""
        if length != _UNDEFINED:
            end = start + length
            if self.size is not None and end > self.size:
                raise _Short(
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes from "
                    f"byte {start}, but the file has {self.size}"
                )
            return end
        # Undefined length: a sequence, or encapsulated pixel data (PS3.5 §7.5, §A.4). Inside
        # an undefined-length UN the items are implicit VR little endian (PS3.5 §6.2.2).
        if depth >= _MAX_DEPTH:
            raise _Odd("sequences nested too deep")
        return self.skip_items(start, explicit and vr != b"UN", depth + 1)

    def skip_items(self, offset: int, explicit: bool, depth: int) -> int:
        """Skip the items of an undefined-length value; return the offset after it."""
        while True:
            tag, _vr, length, start = self.header(offset, explicit=False)
            if tag == _SEQ_END:
                return start
            if tag != _ITEM:
                raise _Odd(f"expected an item at byte {offset}")
            if length != _UNDEFINED:
                offset = self.skip_value(tag, b"", length, start, explicit, depth)
                continue
            offset = start
            while True:  # an undefined-length item: its elements, then the item delimiter
                tag, vr, length, start = self.header(offset, explicit)
                if tag == _ITEM_END:
                    offset = start
                    break
                offset = self.skip_value(tag, vr, length, start, explicit, depth)


def _meta(walker: _Walker) -> tuple[int, bool]:
    """Read the file meta group; return (offset of the dataset, explicit VR?)."""
    if walker.read(_PREAMBLE, 4) != _MAGIC:
        raise _Odd("no DICM prefix")
    offset = _PREAMBLE + 4
    syntax = ""
    while True:
        raw = walker.read(offset, 8)
        if len(raw) < 8 or _U16.unpack_from(raw)[0] != 0x0002:
            break
        tag, vr, length, start = walker.header(offset, explicit=True)
        if length == _UNDEFINED:
            raise _Odd("undefined length in the file meta group")
        if tag == 0x00020010:
            syntax = walker.exact(start, length).decode("latin-1").strip("\0 ")
        offset = start + length
    if not syntax or syntax in _UNHANDLED:
        raise _Odd(f"transfer syntax {syntax or 'missing'} is left to pydicom")
    return offset, syntax != _IMPLICIT_LE


def scan_identity(head: bytes | bytearray | memoryview) -> DicomIdentity | None:
    """The identity of a DICOM file from its first bytes, or None to ask pydicom instead.

    None means "not decided here": not DICOM, an encoding this reader leaves to pydicom,
    a header longer than ``head``, or no SOPInstanceUID.
    """
    view = memoryview(head)
    walker = _Walker(lambda offset, n: bytes(view[offset : offset + n]), None)
    try:
        offset, explicit = _meta(walker)
        values = _top_level(view, offset, explicit, walker)
    except (_Short, _Odd, struct.error):
        return None
    if values is None or not values.get("sop_uid"):
        return None
    return DicomIdentity(
        sop_uid=values["sop_uid"],
        series_uid=values.get("series_uid", ""),
        study_uid=values.get("study_uid", ""),
        patient_id=values.get("patient_id", ""),
    )


def _top_level(
    view: memoryview, offset: int, explicit: bool, walker: _Walker
) -> dict[str, str] | None:
    """Walk top-level elements up to (0020,000E), collecting the wanted values.

    The hot loop of ``verify``: one ``unpack_from`` per element, no copies, no calls
    except for the rare undefined-length value. None: the block ends first.
    """
    values: dict[str, str] = {}
    size = len(view)
    while offset + 8 <= size:
        if explicit:
            group, element, vr, length = _EXPLICIT.unpack_from(view, offset)
            if vr in _LONG_VRS:
                if offset + 12 > size:
                    return None
                length = _U32.unpack_from(view, offset + 8)[0]
                start = offset + 12
            elif vr in _SHORT_VRS:
                start = offset + 8
            else:
                raise _Odd("no valid VR")  # e.g. implicit data under an explicit syntax
        else:
            group, element, length = _IMPLICIT.unpack_from(view, offset)
            vr, start = b"", offset + 8
        tag = group << 16 | element
        if tag > _LAST_WANTED:
            return values
        if length == _UNDEFINED:
            offset = walker.skip_items(start, explicit and vr != b"UN", 1)
            continue
        name = _WANTED.get(tag)
        if name is not None:
            if start + length > size:
                return None
            values[name] = bytes(view[start : start + length]).decode("latin-1").strip("\0 ")
        offset = start + length
    return None


def truncation(path: str) -> str | None:
    """Say how the DICOM file at ``path`` is truncated, or None if its elements fit.

    Walks every top-level element header (values are skipped with positioned reads, never
    loaded), so it costs a few reads per file. Files this reader cannot walk (big endian,
    deflated, odd) are never called truncated.

    Raises:
        OSError: the file cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        walker = _Walker(lambda offset, n: os.pread(fd, n, offset), size)
        try:
            offset, explicit = _meta(walker)
            while offset < size:
                tag, vr, length, start = walker.header(offset, explicit)
                offset = walker.skip_value(tag, vr, length, start, explicit)
        except _Short as short:
            return f"truncated: {short}"
        except _Odd:
            return None
        return None
    finally:
        os.close(fd)

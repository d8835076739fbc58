"""Files that download tools leave beside the images, recognised by name, place and marker.

A copy made by any tool must verify clean, so ``verify`` never flags the non-DICOM files
those tools write next to the images (nbia-protocol §9, peers.md §2). A name alone would
let any DICOM file hide behind it, so a file named like a sidecar is one only when its
first 132 bytes lack the DICOM marker (``DICM`` at byte 128, PS3.10 §7.1):
:func:`sidecar_of` reads those bytes and nothing more. Nothing of a sidecar is kept or
shown: a Go retriever's token cache, for one, holds a credential.

Known sidecars (``rel`` is the path relative to the verified folder, POSIX separators):

=========================================  ===================================================
``md5hashes.csv`` anywhere                 NBIA Data Retriever (``-m``), Go TCIA retriever,
                                           tcia_utils ``hash="y"``: the archive's MD5 list
``LICENSE`` anywhere                       Data Retriever CLI (per collection), ``getImage``
                                           zips (tcia_utils, Go retriever)
``metadata.csv`` anywhere                  Data Retriever (root), Go retriever (root)
``metadata/*.json``, ``metadata/*.csv``,   Go TCIA retriever's metadata cache and copied
``metadata/*.tsv``, ``metadata/*.xlsx``    spreadsheet inputs
``progress.log`` at the top                Go TCIA retriever ``--save-log``
``nbia-emulator.json`` at the top          ``nbia-audit emulator build`` corpus description
``<user>.json`` at the top                 Go TCIA retriever's token cache (never read)
``*.tcia``, ``*.s5cmd`` anywhere           NBIA / IDC manifests kept with the data
``.nbia-audit/`` at the top                nbia-audit's own state (skipped by the walk)
``.DS_Store``, ``._*``, ``Thumbs.db``,     operating-system metadata (Finder, Explorer,
``desktop.ini``, ``.directory``            Dolphin)
=========================================  ===================================================

nbiatoolkit deletes its ``md5hashes.csv`` and idc-index (s5cmd) writes only DICOM, so
neither needs an entry. Anything else that is not DICOM is reported (see docs/verify.md):
``unreadable`` when its name says it should be DICOM, ``unexpected`` otherwise.
"""

from __future__ import annotations

import os

__all__ = ["dicom_expected", "has_dicom_marker", "sidecar_of", "sidecar_tool"]

_ANYWHERE = {
    "md5hashes.csv": "NBIA Data Retriever / TCIA retriever MD5 list",
    "LICENSE": "NBIA license file",
    "metadata.csv": "NBIA Data Retriever / TCIA retriever metadata",
    ".DS_Store": "operating-system metadata",
    "Thumbs.db": "operating-system metadata",
    "desktop.ini": "operating-system metadata",
    ".directory": "operating-system metadata",
}
_TOP_LEVEL = {
    "progress.log": "TCIA retriever log",
    "nbia-emulator.json": "nbia-audit emulator corpus description",
}
_MANIFEST_SUFFIXES = {".tcia": "NBIA manifest", ".s5cmd": "IDC manifest"}
_METADATA_SUFFIXES = (".json", ".csv", ".tsv", ".xlsx")
# Extensions DICOM files carry in the wild; NBIA's own names once lacked ".dcm" entirely
# (Data Retriever 3.5, tickets NBIA-1338/NBIA-1419), so no extension counts too.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
_MARKER_END = 132  # 128-byte preamble + "DICM" (PS3.10 §7.1)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def sidecar_tool(rel: str) -> str | None:
    """Name the tool whose sidecar may live at ``rel``, judged by name and place alone."""
    parent, _, name = rel.rpartition("/")
    if name[-4:] == ".dcm" and name[:2] != "._":
        return None  # nearly every file of a copy: decided at once
    known = _ANYWHERE.get(name)
    if known is not None:
        return known
    if name.startswith("._"):
        return "operating-system metadata"
    suffix = _suffix(name)
    if suffix in _MANIFEST_SUFFIXES:
        return _MANIFEST_SUFFIXES[suffix]
    if not parent:
        if name in _TOP_LEVEL:
            return _TOP_LEVEL[name]
        if suffix == ".json":
            return "TCIA retriever token cache"
    if (parent == "metadata" or parent.endswith("/metadata")) and suffix in _METADATA_SUFFIXES:
        return "TCIA retriever metadata cache"
    return None


def has_dicom_marker(path: str) -> bool:
    """Whether the file at ``path`` carries ``DICM`` at byte 128 (reads 132 bytes at most).

    Opened without blocking, so a FIFO swapped in for a sidecar cannot hang the run.

    Raises:
        OSError: the file cannot be opened or read.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        head = b""
        while len(head) < _MARKER_END:
            chunk = os.read(fd, _MARKER_END - len(head))
            if not chunk:
                break
            head += chunk
    finally:
        os.close(fd)
    return head[128:_MARKER_END] == b"DICM"


def sidecar_of(rel: str, path: str) -> str | None:
    """Name the tool whose sidecar the file at ``rel`` (opened at ``path``) is, or None.

    None when the name is no known sidecar's, and also when the file carries the DICOM
    marker or cannot be read: such a file is judged like any other (a locked image, a
    duplicate, unexpected or unreadable), so a sidecar's name hides nothing.
    """
    tool = sidecar_tool(rel)
    if tool is None:
        return None
    try:
        return None if has_dicom_marker(path) else tool
    except OSError:
        return None  # reading it again reports why it cannot be read


def dicom_expected(rel: str) -> bool:
    """Whether a file at ``rel`` is meant to be DICOM, judged by its name alone."""
    name = rel.rpartition("/")[2]
    suffix = _suffix(name)
    # A name that is a bare UID ("1.2.840.113619.2.55.3") ends in digits after its last dot.
    return suffix in _DICOM_SUFFIXES or suffix == "" or suffix[1:].isdigit()

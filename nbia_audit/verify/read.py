"""Read one file for ``verify``: who it is (DICOM header) and its digests, in one pass.

Runs in worker threads. Each file is opened once, without blocking (a FIFO swapped in
mid-run cannot hang the run) and checked to be a regular file; its first block gives the
identity (:mod:`nbia_audit.dicom.scan`, falling back to pydicom), and, when the caller's
``decide`` asks for it, the same bytes and the rest of the file feed MD5 and xxh3-128
(hashlib and xxhash release the GIL, so threads hash on every core). Memory is one 1 MiB
buffer per thread whatever the file size. Reading failures are values, not exceptions: a
file that cannot be read is a finding, and the run goes on.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from typing import NamedTuple, Protocol

import xxhash

from nbia_audit.dicom.header import DicomIdentity, NotDicomError, read_identity
from nbia_audit.dicom.scan import scan_identity
from nbia_audit.store.statkey import StatKey, key_of

__all__ = ["Examined", "Rules", "Want", "examine", "recheck_xxh3"]

BLOCK = 1024 * 1024
HEAD = 64 * 1024  # the first read: enough for the header of practically every file
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_local = threading.local()


class Want(enum.IntEnum):
    """How much of a file to read once its identity is known."""

    IDENTITY = 0  # the header only (presence, or a file nobody needs hashed)
    FULL = 1  # MD5 and xxh3-128 of every byte


class Examined(NamedTuple):
    """What reading one file found. ``error`` non-empty means it could not be read."""

    identity: DicomIdentity | None = None
    not_dicom: str = ""  # why it is not DICOM, when the header was read and is not
    md5: str = ""
    xxh3: str = ""
    bytes_read: int = 0
    key: StatKey | None = None  # stat at open
    stable: bool = True  # False: size, mtime or ctime changed while it was read
    error: str = ""
    xxh3_matched: bool = False  # quick level: xxh3-128 equals the one recorded


class _Buffers(NamedTuple):
    """One thread's buffers: the head (as bytearray, to search it, and as a view) and a block."""

    head_bytes: bytearray
    head: memoryview
    block: memoryview


def _buffers() -> _Buffers:
    buffers: _Buffers | None = getattr(_local, "buffers", None)
    if buffers is None:
        head = bytearray(HEAD)
        buffers = _Buffers(head, memoryview(head), memoryview(bytearray(BLOCK)))
        _local.buffers = buffers
    return buffers


def _open(path: str) -> tuple[int, StatKey]:
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(0, "not a regular file (replaced while verifying)")
    except BaseException:
        os.close(fd)
        raise
    return fd, key_of(st, fd)


def _fill(fd: int, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; return the byte count."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


def _identify(path: str, head: memoryview) -> tuple[DicomIdentity | None, str]:
    identity = scan_identity(head)
    if identity is not None:
        return identity, ""
    if bytes(head[128:132]) != b"DICM":
        # pydicom refuses such files too (it needs force=True), so it need not be asked.
        return None, "no 'DICM' marker at byte 128"
    try:
        return read_identity(path), ""
    except NotDicomError as exc:
        return None, str(exc)


def _stable(fd: int, before: StatKey) -> bool:
    after = key_of(os.fstat(fd), fd)
    return (after.size, after.mtime_ns, after.ctime_ns) == (
        before.size,
        before.mtime_ns,
        before.ctime_ns,
    )


class Rules(Protocol):
    """What the run tells a worker about the files it reads (see verify.plan.Plan)."""

    @property
    def hash_first(self) -> bool:
        """Hash every file, then identify it by its content (no sample to choose from)."""

    def decide(self, identity: DicomIdentity | None) -> Want:
        """How much of a file to read once its identity is known."""

    def content_identity(self, md5: str) -> DicomIdentity | None:
        """The locked image whose archive MD5 is ``md5``, if any."""


def examine(path: str, rules: Rules) -> Examined:
    """Identify the file at ``path`` and digest it, as ``rules`` ask."""
    try:
        fd, key = _open(path)
    except OSError as exc:
        return Examined(error=exc.strerror or str(exc))
    try:
        buffers = _buffers()
        head = buffers.head
        n = _fill(fd, head[: min(len(head), key.size)])
        if rules.hash_first:
            return _hash_then_identify(path, fd, key, buffers, n, rules)
        identity, not_dicom = _identify(path, head[:n])
        if rules.decide(identity) is Want.IDENTITY:
            return Examined(identity, not_dicom, bytes_read=n, key=key)
        md5, xxh3, total, grew = _digest(fd, head[:n], buffers.block, key.size)
        stable = not grew and _stable(fd, key)
        return Examined(identity, not_dicom, md5, xxh3, total, key, stable)
    except OSError as exc:
        return Examined(error=exc.strerror or str(exc), key=key)
    finally:
        os.close(fd)


def _digest(
    fd: int, head: memoryview, view: memoryview, size: int
) -> tuple[str, str, int, bool]:
    """MD5 and xxh3-128 of ``head`` and the rest of the file, the byte count, and whether
    the file holds more than the ``size`` it had when opened."""
    md5 = hashlib.md5(head)
    xxh = xxhash.xxh3_128(head)
    total = len(head)
    for chunk in _blocks(fd, view, size - total):
        md5.update(chunk)
        xxh.update(chunk)
        total += len(chunk)
    return md5.hexdigest(), xxh.hexdigest(), total, _holds_more(fd)


def _blocks(fd: int, view: memoryview, remaining: int) -> Iterator[memoryview]:
    """The next ``remaining`` bytes of ``fd`` (fewer if it ends first), a block at a time.

    Never more: a file that grows while it is read, or a link to one that never ends
    (``/proc/self/pagemap``, whose stat size is 0), would otherwise be read without end.
    """
    while remaining > 0 and (n := os.readv(fd, [view[: min(len(view), remaining)]])):
        remaining -= n
        yield view[:n]


def _holds_more(fd: int) -> bool:
    """Whether a byte follows what stat said the file held: it changed while being read."""
    return bool(os.read(fd, 1))


def _hash_then_identify(
    path: str, fd: int, key: StatKey, buffers: _Buffers, n: int, rules: Rules
) -> Examined:
    """Digest the file whose first ``n`` bytes are in the head buffer, then identify it."""
    # A file whose MD5 is a locked image's archive MD5 holds that image's bytes, header
    # included; checking that its SOPInstanceUID is among the first bytes rules out an
    # archive that mixed two images' MD5s up. That spares parsing the header of nearly
    # every file: a quarter of the GIL time a full pass spends per file.
    head = buffers.head[:n]
    md5, xxh3, total, grew = _digest(fd, head, buffers.block, key.size)
    stable = not grew and _stable(fd, key)
    identity = rules.content_identity(md5)
    if identity is not None and buffers.head_bytes.find(identity.sop_uid.encode(), 0, n) >= 0:
        return Examined(identity, "", md5, xxh3, total, key, stable)
    identity, not_dicom = _identify(path, head)
    return Examined(identity, not_dicom, md5, xxh3, total, key, stable)


def recheck_xxh3(path: str, recorded_xxh3: str, rules: Rules) -> Examined:
    """The ``quick`` level: xxh3-128 of every byte against the one recorded at the file's
    last full pass.

    On a match the recorded MD5 still describes the file (``xxh3_matched``); on a
    mismatch the file changed since its last full pass, so it is examined in full.
    """
    try:
        fd, key = _open(path)
    except OSError as exc:
        return Examined(error=exc.strerror or str(exc))
    try:
        view = _buffers().block
        xxh = xxhash.xxh3_128()
        total = 0
        for chunk in _blocks(fd, view, key.size):
            xxh.update(chunk)
            total += len(chunk)
        digest = xxh.hexdigest()
        stable = not _holds_more(fd) and _stable(fd, key)
    except OSError as exc:
        return Examined(error=exc.strerror or str(exc), key=key)
    finally:
        os.close(fd)
    if digest == recorded_xxh3 and stable:
        return Examined(xxh3=digest, bytes_read=total, key=key, xxh3_matched=True)
    return examine(path, rules)

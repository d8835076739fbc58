"""Streaming file digests: MD5 (the archive's) and xxh3-128 (our fast fingerprint).

Files are read in 1 MiB blocks into one reused buffer, so memory stays flat whatever the
file size. hashlib and xxhash release the GIL on large updates, so a thread pool hashes on
every core (measured in integrity-anchors.md §8.2: 2 threads ≈ 2 processes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import xxhash

__all__ = ["BLOCK_SIZE", "FileDigest", "digest_file", "digest_stream", "xxh3_file"]

BLOCK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileDigest:
    """The MD5 and xxh3-128 hex digests of some bytes, and how many there were."""

    md5: str
    xxh3_128: str
    size: int


def digest_stream(
    stream: IO[bytes], *, want_md5: bool = True, copy_to: IO[bytes] | None = None
) -> FileDigest:
    """Digest everything readable from ``stream`` in one pass, copying it to ``copy_to``."""
    md5 = hashlib.md5() if want_md5 else None
    fingerprint = xxhash.xxh3_128()
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    size = 0
    while n := stream.readinto(buffer):  # type: ignore[attr-defined]
        chunk = view[:n]
        if md5 is not None:
            md5.update(chunk)
        fingerprint.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
        size += n
    return FileDigest(md5.hexdigest() if md5 else "", fingerprint.hexdigest(), size)


def digest_file(path: Path | str, *, want_md5: bool = True) -> FileDigest:
    """Digest the file at ``path`` (MD5 and xxh3-128 unless ``want_md5`` is False).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb", buffering=0) as handle:
        return digest_stream(handle, want_md5=want_md5)


def xxh3_file(path: Path | str) -> FileDigest:
    """Digest only the fast fingerprint (``md5`` is empty)."""
    return digest_file(path, want_md5=False)

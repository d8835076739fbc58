"""Series ZIPs written the way ``java.util.zip.ZipOutputStream`` streams them (protocol §2.1).

Entries are DEFLATEd with data descriptors (the output is not seekable) and stamped with the
request time, so ZIP bytes are never reproducible, just like NBIA's. Each entry's bytes are
fetched only when it is written, so a series of any size streams in constant memory.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterable
from typing import IO, Protocol, cast

CHUNK = 64 * 1024


class Sink(Protocol):
    """Where the ZIP bytes go (the chunked HTTP writer)."""

    def write(self, data: bytes) -> object: ...


class _Unseekable:
    """Hide ``tell``/``seek`` so ``zipfile`` writes data descriptors, as Java does."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: every write goes straight to the sink."""


Entry = tuple[str, Callable[[], bytes]]


def stream_zip(sink: Sink, entries: Iterable[Entry]) -> None:
    """Write a ZIP of ``entries`` (name, bytes provider) to ``sink``.

    If a provider fails (a file missing on disk), the server logs it and closes the ZIP
    normally: the client gets a well-formed archive without that entry or any after it (§2.1).
    """
    stamp = time.localtime()[:6]
    target = cast(IO[bytes], _Unseekable(sink))
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, provider in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            try:
                data = provider()
            except (OSError, KeyError):
                break
            with archive.open(info, "w") as member:
                for start in range(0, len(data), CHUNK):
                    member.write(data[start : start + CHUNK])


def java_hashmap_order(keys: list[str]) -> list[str]:
    """Iteration order of a ``java.util.HashMap<String, ...>`` filled with ``keys`` in order.

    ``md5hashes.csv`` rows come from such a map (protocol §2.3). Buckets are
    ``(h ^ h >>> 16) & (capacity - 1)`` of ``String.hashCode``; the table starts at 16 and
    doubles past a 0.75 load factor; a bucket keeps insertion order. (Treeified buckets, which
    need 8 collisions in one bucket, are not modelled.)
    """
    capacity = 16
    while len(keys) > capacity * 0.75:
        capacity *= 2
    buckets: dict[int, list[str]] = {}
    for key in keys:
        h = _java_string_hash(key)
        spread = (h ^ (h >> 16)) & (capacity - 1)
        buckets.setdefault(spread, []).append(key)
    return [key for index in sorted(buckets) for key in buckets[index]]


def _java_string_hash(text: str) -> int:
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h  # as an unsigned 32-bit value, which is what ``h >>> 16`` sees

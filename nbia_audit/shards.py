"""Shards of a lock: whole series split N ways, balanced by the bytes the lock holds.

A shard is a deterministic set of whole series: every process that computes the split from the
same lock gets the same split, so shard K of N run on one node and shard J of N run on another
never overlap and never leave a series out. Files whose series cannot be known without reading
them go by a hash of their relative path, which every shard computes the same way too.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nbia_audit.errors import StoreError

# Enough for any cluster's job array, small enough that a typo (100000 for 1000) is caught.
MAX_SHARDS = 100_000


@dataclass(frozen=True, order=True)
class Shard:
    """Shard `index` of `count`, 1-based (the way job arrays and people count).

    A bad shard is a `ValueError` whose message is one line saying what to write instead; the
    command line turns it into a usage error (exit 2).
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(
                f"shard count {self.count} is out of range: give N from 1 to {MAX_SHARDS}"
            )
        if not 1 <= self.index <= self.count:
            raise ValueError(
                f"shard {self.index}/{self.count} does not exist: K runs from 1 to N ({self.count})"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"K/N"` (e.g. `"3/8"`) to a `Shard`, with a one-line error naming what is wrong."""
        head, sep, tail = text.strip().partition("/")
        if not sep:
            raise ValueError(f"shard {text!r} is not K/N: write it as e.g. 3/8 (shard 3 of 8)")
        try:
            index, count = int(head), int(tail)
        except ValueError:
            raise ValueError(
                f"shard {text!r} is not K/N with whole numbers: write it as e.g. 3/8"
            ) from None
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def assign_series(series: Iterable[tuple[str, int]], count: int) -> dict[str, int]:
    """Each series UID to its shard index (1..count), balanced by bytes.

    Greedy longest-processing-time: the biggest series first, each to the shard with the fewest
    bytes so far (ties to the lower index); series of equal size go in UID order. The result
    depends only on the set of (UID, bytes) pairs, never on their order, so every shard
    computes the same split. No shard ends more than the largest series above the ideal
    (total / count). A UID given twice counts once, with the larger size.
    """
    Shard(1, count)  # the count's range check, with the same message as parse
    sizes: dict[str, int] = {}
    for uid, size in series:
        sizes[uid] = max(max(size, 0), sizes.get(uid, 0))
    heap = [(0, index) for index in range(1, count + 1)]
    owner: dict[str, int] = {}
    for uid, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        load, index = heapq.heappop(heap)
        owner[uid] = index
        heapq.heappush(heap, (load + size, index))
    return owner


def shard_of_path(rel: str, count: int) -> int:
    """The shard (1..count) that owns a file whose series is not known without reading it.

    A keyed hash of the relative path as given (POSIX separators), so the answer is the same on
    every node and in every run, whatever Python's hash seed.
    """
    Shard(1, count)
    digest = hashlib.blake2b(
        rel.encode("utf-8", "surrogateescape"), digest_size=8, person=b"nbia-shard"
    ).digest()
    return int.from_bytes(digest, "big") % count + 1


def shard_file_name(verb: str, shard: Shard, ext: str) -> str:
    """The one name of a shard's file in the run folder: ``<verb>-<K>-of-<N>.<ext>``."""
    return f"{verb}-{shard.index}-of-{shard.count}.{ext}"


def shard_work_folder(run_dir: Path, verb: str, shard: Shard) -> Path:
    """A private folder in the run folder for one attempt of one shard: its file is built
    there under a temporary name and renamed into place by :func:`commit_shard_file`.

    Raises:
        StoreError: the run folder cannot be written.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        unique = f"{os.getpid()}-{secrets.token_hex(4)}"
        work = run_dir / f".{verb}-{shard.index}-of-{shard.count}.{unique}.tmp"
        work.mkdir()
    except OSError as exc:
        raise StoreError(f"{run_dir}: cannot write the shard's file there ({exc})") from exc
    return work


def commit_shard_file(built: Path, final: Path) -> None:
    """Rename a complete shard file into place durably: the file's bytes first, then the
    rename, then the folder's entry, so a merge sees it whole or not at all, even after a
    crash of the node.

    Raises:
        OSError: a sync or the rename failed.
    """
    _fsync(built)
    os.replace(built, final)
    _fsync(final.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What one shard run did: the file it wrote (complete, renamed into place) and counts.

    A shard's facts are not a verdict: only the merge of all N judges.
    """

    verb: str  # "verify" or "fetch"
    shard: Shard
    path: Path  # the shard's file in the run folder
    series: int  # series this shard owns
    files: int  # files it accounted for (verify) or placed and found in place (fetch)
    seconds: float

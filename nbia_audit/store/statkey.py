"""The stat key of a file, and when it proves nothing (the racily-clean rule).

A record of the local state says a file was proven when its stat key was what it was then;
an equal key later means "not touched since" (or a liar). One type everywhere: the walk of
``verify`` builds a million of them per run, so it is a tuple (``tuple.__new__`` builds one
at half the cost of the named constructor), with named fields.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "COARSE_RACY_NS",
    "FINE_RACY_NS",
    "StatKey",
    "epoch_ns",
    "key_of",
    "racily_clean",
    "stat_key",
]

# A stat key taken within one timestamp tick of a write may survive a second write (git's
# "racily clean" problem, racy-git.adoc): such a key proves nothing.
COARSE_RACY_NS = 2_000_000_000  # whole-second timestamps (FAT: 2 s granularity)
FINE_RACY_NS = 100_000_000  # nanosecond fields, but the kernel's clock ticks coarsely


class StatKey(NamedTuple):
    """What ``stat`` says about a file: equal keys mean "not touched since" (or a liar)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    def same_file(self, other: StatKey) -> bool:
        """Whether both keys name one inode of one device (whatever its content)."""
        return self.inode == other.inode and self.device == other.device


def key_of(st: os.stat_result) -> StatKey:
    return StatKey(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stat_key(path: Path | str) -> StatKey:
    """Stat ``path`` without following a final symlink.

    Raises:
        OSError: the file cannot be stat'ed.
    """
    return key_of(os.stat(path, follow_symlinks=False))


def racily_clean(mtime_ns: int, taken_ns: int) -> bool:
    """Whether a stat key with ``mtime_ns``, taken at ``taken_ns``, proves nothing: the
    file was written within one timestamp tick of the moment (or after it)."""
    window = COARSE_RACY_NS if mtime_ns % 1_000_000_000 == 0 else FINE_RACY_NS
    return mtime_ns >= taken_ns - window


def epoch_ns(moment: datetime) -> int:
    """``moment`` in nanoseconds since the epoch, to the microsecond it holds."""
    return round(moment.timestamp() * 1_000_000) * 1000

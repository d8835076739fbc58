"""The stat key of a file, and when it proves nothing (the racily-clean rule).

A record of the local state says a file was proven when its stat key was what it was then;
an equal key later means "not touched since" (or a liar). One type everywhere: the walk of
``verify`` builds a million of them per run, so it is a tuple (``tuple.__new__`` builds one
at half the cost of the named constructor), with named fields.

The key names the file system by its identity (``statvfs``'s ``f_fsid``), never by
``st_dev``: a device number is a client's own name for a mount (NFS and Lustre clients
number the same export differently, and may after a reboot), so a key with it could not be
recognised on another node of a cluster. ``f_fsid`` is the same on every client where the
file system defines it (Lustre derives it from the metadata target's UUID, ext4 and btrfs
from theirs) and 0 where it does not (Linux NFS clients). Either way it is only one part of
the key: inode, size, mtime and ctime to the nanosecond must all match too, and ctime cannot
be set from user space, so a state database copied with its tree (rsync, cp -a, a crafted
one) describes files whose ctime is that of the copy, and proves nothing about them
(docs/shared-filesystems.md).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "COARSE_RACY_NS",
    "FINE_RACY_NS",
    "StatKey",
    "UNKNOWN_FS",
    "epoch_ns",
    "fs_identity",
    "fs_lookup",
    "key_of",
    "racily_clean",
    "stat_key",
]

# A stat key taken within one timestamp tick of a write may survive a second write (git's
# "racily clean" problem, racy-git.adoc): such a key proves nothing.
COARSE_RACY_NS = 2_000_000_000  # whole-second timestamps (FAT: 2 s granularity)
FINE_RACY_NS = 100_000_000  # nanosecond fields, but the kernel's clock ticks coarsely


UNKNOWN_FS = -1  # statvfs failed: no record made with it is ever trusted on another pass

# st_dev -> f_fsid, for this process: a device number is stable while a mount lasts, and the
# walk meets one or a few, so statvfs runs once per mount rather than once per file.
_FS_OF_DEVICE: dict[int, int] = {}


def fs_lookup() -> Callable[[int], int | None]:
    """The per-process st_dev -> identity lookup, for the walk's hot loop (None: unknown
    yet, ask :func:`fs_identity`)."""
    return _FS_OF_DEVICE.get


class StatKey(NamedTuple):
    """What ``stat`` says about a file: equal keys mean "not touched since" (or a liar)."""

    fs: int  # the file system's identity (statvfs f_fsid), the same on every client
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    def same_file(self, other: StatKey) -> bool:
        """Whether both keys name one inode of one file system (whatever its content)."""
        return self.inode == other.inode and self.fs == other.fs


def fs_identity(device: int, where: str | int | os.PathLike[str]) -> int:
    """The identity of the file system whose device number (``st_dev``) is ``device``:
    ``f_fsid`` of ``where`` (a path on it, or an open descriptor), looked up once per
    device."""
    fs = _FS_OF_DEVICE.get(device)
    if fs is None:
        if not hasattr(os, "statvfs"):  # Windows: st_dev is the volume's serial number
            return _FS_OF_DEVICE.setdefault(device, device)
        try:
            found = os.fstatvfs(where) if isinstance(where, int) else os.statvfs(where)
        except OSError:
            return UNKNOWN_FS
        fsid = found.f_fsid & 0xFFFF_FFFF_FFFF_FFFF
        # As SQLite's signed 64-bit integer (it stores nothing wider): same bits, same id.
        fs = _FS_OF_DEVICE.setdefault(device, fsid - (1 << 64) if fsid >> 63 else fsid)
    return fs


def key_of(st: os.stat_result, where: str | int | os.PathLike[str]) -> StatKey:
    """The key of ``st``, which was taken of ``where`` (a path, or an open descriptor)."""
    fs = _FS_OF_DEVICE.get(st.st_dev)
    if fs is None:
        fs = fs_identity(st.st_dev, where)
    return StatKey(fs, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stat_key(path: Path | str) -> StatKey:
    """Stat ``path`` without following a final symlink.

    Raises:
        OSError: the file cannot be stat'ed.
    """
    st = os.stat(path, follow_symlinks=False)
    # statvfs follows links: a link's file system is its folder's.
    where = (os.path.dirname(path) or ".") if stat.S_ISLNK(st.st_mode) else path
    return key_of(st, where)


def racily_clean(mtime_ns: int, taken_ns: int) -> bool:
    """Whether a stat key with ``mtime_ns``, taken at ``taken_ns``, proves nothing: the
    file was written within one timestamp tick of the moment (or after it)."""
    window = COARSE_RACY_NS if mtime_ns % 1_000_000_000 == 0 else FINE_RACY_NS
    return mtime_ns >= taken_ns - window


def epoch_ns(moment: datetime) -> int:
    """``moment`` in nanoseconds since the epoch, to the microsecond it holds."""
    return round(moment.timestamp() * 1_000_000) * 1000

"""Walk a copy's folder tree: every regular file, and every entry that cannot be read as one.

Sorted (names within each directory), so two runs over the same tree see the same order;
one ``scandir`` per directory and one ``stat`` per file, nothing more. Directory symbolic
links are never followed (no loops, no escaping the copy); a symbolic link to a regular
file is read through, because the bytes are what a copy holds (git-annex and DataLad keep
every file as such a link). nbia-audit's own ``.nbia-audit`` state directory is skipped at
the root of the copy only: a folder of that name anywhere else is walked like any other, so
it cannot hide files.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

from nbia_audit.store.statefolder import STATE_DIR
from nbia_audit.store.statkey import StatKey, fs_identity, fs_lookup, key_of

__all__ = ["Blocked", "FileEntry", "walk"]


_by_name = attrgetter("name")
_new = tuple.__new__


class FileEntry(NamedTuple):
    """A regular file (or a link to one): where it is and what ``stat`` says."""

    rel: str  # relative to the root, POSIX separators
    path: str  # to open
    key: StatKey


@dataclass(frozen=True, slots=True)
class Blocked:
    """An entry that cannot be read as a file: a FIFO, a dangling link, an unlistable dir."""

    rel: str
    detail: str
    io_error: bool  # True: reading failed (permissions, I/O), so the check is incomplete
    directory: bool = False  # an unlistable directory: nothing below it was seen


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    for test, name in _SPECIAL:
        if test(mode):
            return name
    return "not a regular file"


def _classify(entry: os.DirEntry[str], rel: str) -> FileEntry | Blocked | None:
    """A file or a blocked entry; None for a directory (the caller descends)."""
    link = False
    try:
        link = entry.is_symlink()
        if not link and entry.is_dir(follow_symlinks=False):
            return None
        # A link is read through: what counts is the file it names.
        st = os.stat(entry.path) if link else entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        if link:
            return Blocked(rel, "dangling symbolic link: its target does not exist", False)
        return Blocked(rel, "vanished while the copy was being verified", True)
    except OSError as exc:
        what = "symbolic link cannot be followed" if link else "cannot be examined"
        return Blocked(rel, f"{what}: {exc.strerror}", True)
    if stat.S_ISREG(st.st_mode):
        return FileEntry(rel, entry.path, key_of(st, entry.path))
    if not link:
        return Blocked(rel, _kind(st.st_mode), False)
    if stat.S_ISDIR(st.st_mode):
        return Blocked(rel, "symbolic link to a directory: not followed", False)
    return Blocked(rel, f"symbolic link to {_kind(st.st_mode)}", False)


def walk(
    root: str, *, skip: Collection[str] = (), ignore: tuple[str, ...] = ()
) -> Iterator[FileEntry | Blocked]:
    """Yield every file and blocked entry under ``root``, directory by directory, sorted.

    ``skip`` holds relative paths to pass over silently (the lock itself, when it lives in
    the copy); ``ignore`` holds glob patterns matched against the relative path and the
    name. An unlistable directory below the root is yielded as a :class:`Blocked` entry.

    Raises:
        OSError: ``root`` itself cannot be listed.
    """
    pending: list[tuple[str, str]] = [(root, "")]
    fs_get = fs_lookup()  # st_dev -> the file system's identity (store.statkey)
    first = True
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=_by_name)
        except OSError as exc:
            if first:
                raise
            detail = f"directory cannot be listed: {exc.strerror}"
            yield Blocked(prefix.rstrip("/"), detail, True, directory=True)
            continue
        first = False
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            rel = prefix + entry.name
            if rel in skip or (ignore and _ignored(rel, entry.name, ignore)):
                continue
            if entry.is_file(follow_symlinks=False):  # the common case, kept lean
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    pass  # vanished or unreadable: _classify says which
                else:  # tuple.__new__: half the cost of the NamedTuple constructors
                    fs = fs_get(st.st_dev)
                    if fs is None:  # the first file of a mount: statvfs once
                        fs = fs_identity(st.st_dev, entry.path)
                    key = _new(StatKey, (fs, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
                    yield _new(FileEntry, (rel, entry.path, key))
                    continue
            found = _classify(entry, rel)
            if found is not None:
                yield found
            elif rel != STATE_DIR:  # our state lives at the root only
                subdirs.append((entry.path, rel + "/"))
        pending.extend(reversed(subdirs))


def _ignored(rel: str, name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)

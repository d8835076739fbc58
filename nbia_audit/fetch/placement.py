"""The destination's private working area, and moving verified files into place atomically.

Everything unverified lives under ``DEST/.nbia-audit/tmp`` (the same file system as the
destination, so a rename is atomic). A verified image is fsynced and renamed into its final
path, and the directories are fsynced after; a reader, or a re-run after ``kill -9``, sees
either no file or the complete verified one at each path. ``tmp`` is emptied when a fetch
starts, so nothing a killed run left behind survives. An exclusive ``flock`` on
``DEST/.nbia-audit/fetch.lock`` keeps two fetches from writing one destination at once; the
kernel releases it when a process dies, however it dies.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

from nbia_audit.crashpoints import crashpoint
from nbia_audit.errors import DownloadError
from nbia_audit.store.statefolder import StateFolder
from nbia_audit.store.statkey import StatKey, stat_key

try:  # POSIX; elsewhere fetches are not guarded against running twice
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Workspace", "fsync_path"]


def fsync_path(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries (renames, new names), to the disk.

    Raises:
        OSError: it cannot be opened or flushed.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Workspace:
    """``DEST/.nbia-audit``: the fetch lock, the temporary area, safe placement.

    Use as a context manager; entering takes the lock and empties ``tmp``.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        folder = StateFolder.of(dest)
        self.private = folder.path
        self.tmp = folder.work
        self._lock_path = folder.fetch_lock
        self._lock_file: IO[bytes] | None = None
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        self._syncer = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fsync")

    def __enter__(self) -> Workspace:
        """Take the destination's fetch lock and clear leftovers of earlier runs.

        Raises:
            DownloadError: the destination cannot be created, or another fetch holds it.
        """
        try:
            self.private.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self._lock_path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise DownloadError(f"{self.dest}: cannot use it as a destination ({exc})") from exc
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self._lock_file.close()
                raise DownloadError(
                    f"{self.dest}: another nbia-audit fetch is writing here; wait for it to "
                    "finish (or stop it), then run this again"
                ) from exc
        self._clear_tmp()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._syncer.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock

    def _clear_tmp(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            self.tmp.mkdir()
        except OSError as exc:
            raise DownloadError(f"{self.tmp}: cannot create the work folder ({exc})") from exc

    def workdir(self, label: str) -> Path:
        """A fresh, empty folder under ``tmp`` for one series attempt.

        Raises:
            DownloadError: it cannot be created.
        """
        try:
            return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.tmp))
        except OSError as exc:
            raise DownloadError(f"{self.tmp}: cannot create a work folder ({exc})") from exc

    def place(self, moves: Sequence[tuple[Path, PurePosixPath]]) -> list[StatKey]:
        """Move each verified temp file to its path under the destination, durably.

        Returns the stat key of each placed file, in order.

        Raises:
            DownloadError: a folder on the way is a link or a file, the destination spans
                file systems, or the disk refused the write.
        """
        parents: set[Path] = set()
        keys: list[StatKey] = []
        try:
            finals = [self._target(relative, parents) for _, relative in moves]
            # The bytes are durable before any name points at them. Concurrent fsyncs share
            # journal commits: about 4x faster than one after another for small files.
            list(self._syncer.map(fsync_path, [temp for temp, _ in moves]))
            for (temp, _), final in zip(moves, finals, strict=True):
                os.replace(temp, final)
                crashpoint("fetch:one-file-placed")  # the rest of the series not yet
                keys.append(stat_key(final))
            for parent in sorted(parents):
                fsync_path(parent)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise DownloadError(
                    f"{self.dest}: a folder inside it is on another file system; fetch into a "
                    "destination that is one file system"
                ) from exc
            raise DownloadError(f"{self.dest}: cannot place a file ({exc})") from exc
        return keys

    def _target(self, relative: PurePosixPath, parents: set[Path]) -> Path:
        parents.add(self._ensure_dir(relative.parent, parents))
        return self.dest.joinpath(*relative.parts)

    def _ensure_dir(self, relative: PurePosixPath, created_in: set[Path]) -> Path:
        """Create ``DEST/relative`` one component at a time, refusing links on the way.

        Folders that received a new entry are added to ``created_in`` (to be fsynced).
        """
        current = self.dest
        for part in relative.parts:
            current = current / part
            with self._dirs_lock:
                if current in self._known_dirs:
                    continue
            try:
                os.mkdir(current)
                created_in.add(current.parent)
            except FileExistsError:
                mode = os.lstat(current).st_mode
                if not stat.S_ISDIR(mode):
                    what = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
                    raise DownloadError(
                        f"{current} is {what}; fetch only writes into real folders under the "
                        "destination (move it away and run again)"
                    ) from None
            with self._dirs_lock:
                self._known_dirs.add(current)
        return current

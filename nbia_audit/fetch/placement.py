"""The destination's private working area, and moving verified files into place atomically.

Everything unverified lives under ``DEST/.nbia-audit/tmp/<run-id>/``, a folder of this run
alone, on the same file system as the destination (so a rename is atomic). A verified image
is fsynced and renamed into its final path, and the directories are fsynced after; a reader,
or a re-run after ``kill -9``, sees either no file or the complete verified one at each path.

Runs never delete each other's work (the destination may be a shared file system that
several nodes mount). A run id names the host, its boot, the process and a random part; a
run removes its own folder when it ends, and another run's folder only when that run is
provably dead: the same host, and either another boot or a process id that no longer
exists, and the ``flock`` its owner held on ``owner.lock`` inside it can be taken. Folders of
other hosts are never removed automatically (docs/shared-filesystems.md says how to).

An exclusive ``flock`` on ``DEST/.nbia-audit/<name>.lock`` keeps two fetches from doing the
same work at once; the kernel releases it when a process dies, however it dies. The whole
destination is ``fetch.lock``; a shard locks its own name exclusively and ``fetch.lock``
shared, so shards run side by side but never beside a whole fetch. Where the file system
does not support ``flock`` (NFS without a lock manager, Lustre mounted ``noflock``) the fetch
is refused, naming the file system and what to do.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

from nbia_audit.crashpoints import crashpoint
from nbia_audit.errors import DownloadError
from nbia_audit.store.statefolder import WHOLE_DESTINATION_LOCK, StateFolder
from nbia_audit.store.statkey import StatKey, stat_key

try:  # POSIX; elsewhere fetches are not guarded against running twice
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunId", "Workspace", "filesystem_of", "fsync_path"]

_OWNER = "owner.lock"  # in a run's folder, flock'ed by the run for its whole life
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# flock is not there at all (as opposed to held by someone else)
_NO_FLOCK = frozenset(
    {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
)
_HELD = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})


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


def _boot_id() -> str:
    """Eight hex digits of this boot's id (Linux), or "0" where there is none."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii")
    except OSError:
        return "0"
    return re.sub(r"[^0-9a-f]", "", text.lower())[:8] or "0"


@dataclass(frozen=True, slots=True)
class RunId:
    """Who made a work folder: ``<host>_<boot>_<pid>_<random>``."""

    host: str
    boot: str
    pid: int
    nonce: str

    @classmethod
    def mine(cls) -> RunId:
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"
        return cls(host, _boot_id(), os.getpid(), secrets.token_hex(4))

    @classmethod
    def parse(cls, name: str) -> RunId | None:
        parts = name.rsplit("_", 3)
        if len(parts) != 4 or not parts[2].isdigit() or not parts[0]:
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    def __str__(self) -> str:
        return f"{self.host}_{self.boot}_{self.pid}_{self.nonce}"

    def provably_dead(self, me: RunId) -> bool:
        """Whether this run is over, as far as this host can prove (False elsewhere)."""
        if self.host != me.host:
            return False  # its processes, and its locks under localflock, are not visible here
        if self.boot != me.boot and "0" not in (self.boot, me.boot):
            return True  # that boot has ended
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # alive (another user's process)
        return False  # alive, or its pid reused: both keep the folder


def filesystem_of(path: Path) -> str:
    """"nfs4 mounted at /data" for the mount holding ``path`` (Linux), else "unknown"."""
    try:
        target = os.path.realpath(path)
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "a file system of unknown type"
    best, kind = "", ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, right.split()[0]
    return f"{kind} mounted at {best}" if kind else "a file system of unknown type"


def _lock_refusal(dest: Path, lock_path: Path, exc: OSError) -> DownloadError:
    """The error for a lock that could not be taken: held by another run, or no flock."""
    if exc.errno in _HELD:
        return DownloadError(
            f"{dest}: another nbia-audit fetch is writing here ({lock_path.name} is held); wait "
            "for it to finish (or stop it), then run this again"
        )
    if exc.errno in _NO_FLOCK:
        return DownloadError(
            f"{dest}: the file system ({filesystem_of(dest)}) does not support file locks "
            f"({exc.strerror}); nbia-audit needs flock so that two fetches never write one "
            "destination. Mount it with locking (Lustre: -o flock; NFS: with a lock manager, "
            "not -o nolock), or fetch onto a file system that has it and move the copy "
            "(docs/shared-filesystems.md)"
        )
    return DownloadError(f"{dest}: cannot lock {lock_path} ({exc.strerror})")


def _flock(handle: IO[bytes], *, exclusive: bool) -> None:
    """Lock ``handle`` without waiting (nothing to lock with on Windows)."""
    if fcntl is not None:
        operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        fcntl.flock(handle.fileno(), operation | fcntl.LOCK_NB)


class Workspace:
    """``DEST/.nbia-audit``: the fetch lock, this run's work folder, safe placement.

    ``lock_name`` names what this run locks exclusively: ``fetch`` (the default) is the
    whole destination; a shard passes its own name (``fetch-3-of-8``) and also holds
    ``fetch.lock`` shared. Use as a context manager: entering takes the locks, creates
    this run's folder and removes the folders of runs that are provably dead.
    """

    def __init__(self, dest: Path, *, lock_name: str = WHOLE_DESTINATION_LOCK) -> None:
        if not _LOCK_NAME.fullmatch(lock_name):
            raise ValueError(f"lock name {lock_name!r}: letters, digits, '.', '_', '-' only")
        self.dest = dest
        self.lock_name = lock_name
        folder = StateFolder.of(dest)
        self.private = folder.path
        self.tmp = folder.work  # shared by every run: only its run folders belong to one
        self.run_id = RunId.mine()
        self.run_dir = self.tmp / str(self.run_id)
        self.foreign_runs: tuple[str, ...] = ()  # other hosts' folders, left alone
        self._folder = folder
        self._held: list[IO[bytes]] = []
        self._known_dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        self._syncer = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fsync")

    def __enter__(self) -> Workspace:
        """Take the locks, make this run's folder, clear what dead runs left.

        Raises:
            DownloadError: the destination cannot be created, another fetch holds it, or
                its file system has no flock.
        """
        whole = self.lock_name == WHOLE_DESTINATION_LOCK
        try:
            self.private.mkdir(parents=True, exist_ok=True)
            self._take(self._folder.lock(WHOLE_DESTINATION_LOCK), exclusive=whole)
            if not whole:
                self._take(self._folder.lock(self.lock_name), exclusive=True)
            self._make_run_dir()
            self._clear_dead_runs(legacy_too=whole)
        except BaseException:
            shutil.rmtree(self.run_dir, ignore_errors=True)  # ours: its name is unique
            self._release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._syncer.shutdown()
        shutil.rmtree(self.run_dir, ignore_errors=True)  # ours alone
        self._release()

    def _take(self, path: Path, *, exclusive: bool) -> None:
        try:
            handle = open(path, "ab")  # noqa: SIM115 - held until _release
        except OSError as exc:
            raise DownloadError(f"{self.dest}: cannot use it as a destination ({exc})") from exc
        self._held.append(handle)
        try:
            _flock(handle, exclusive=exclusive)
        except OSError as exc:
            raise _lock_refusal(self.dest, path, exc) from exc

    def _release(self) -> None:
        for handle in reversed(self._held):
            handle.close()  # releases its flock
        self._held = []

    def _make_run_dir(self) -> None:
        try:
            self.tmp.mkdir(exist_ok=True)
            self.run_dir.mkdir()
        except OSError as exc:
            raise DownloadError(f"{self.run_dir}: cannot create the work folder ({exc})") from exc
        self._take(self.run_dir / _OWNER, exclusive=True)

    def _clear_dead_runs(self, *, legacy_too: bool) -> None:
        """Remove the work folders of runs that are provably dead.

        ``legacy_too``: also entries that are not run folders (an older release's
        ``tmp/series-*``): only under the whole destination's exclusive lock, which older
        releases took as well.
        """
        foreign: list[str] = []
        try:
            names = sorted(os.listdir(self.tmp))
        except OSError:
            return
        for name in names:
            path = self.tmp / name
            owner = RunId.parse(name)
            if owner is None:
                if legacy_too:
                    _remove(path)
                continue
            if owner == self.run_id:
                continue
            if owner.host != self.run_id.host:
                foreign.append(name)
            elif owner.provably_dead(self.run_id) and _unlocked(path / _OWNER):
                shutil.rmtree(path, ignore_errors=True)
        self.foreign_runs = tuple(foreign)

    def workdir(self, label: str) -> Path:
        """A fresh, empty folder in this run's folder for one series attempt.

        Raises:
            DownloadError: it cannot be created.
        """
        try:
            return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.run_dir))
        except OSError as exc:
            raise DownloadError(f"{self.run_dir}: cannot create a work folder ({exc})") from exc

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


def _unlocked(owner: Path) -> bool:
    """Whether nobody holds ``owner``'s flock (a folder without one was never finished)."""
    try:
        handle = open(owner, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return True
    except OSError:
        return False
    with handle:
        try:
            _flock(handle, exclusive=True)
        except OSError:
            return False
        return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

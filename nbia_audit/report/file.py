"""Write a rendered report to a file atomically: readers see the old file or the new one.

CI systems pick reports up as soon as a job ends, and a job can be killed at any moment;
a half-written JUnit file would be read as "no failures". So the text goes to a temporary
file beside the target, is synced, and is renamed into place.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from nbia_audit.errors import StoreError

__all__ = ["write_report"]


def write_report(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically.

    A link is followed: the file it names is replaced, the link stays. A target that is not
    a regular file (``/dev/null``, a FIFO, ``/dev/stdout``) is written into as it is: a rename
    over it would replace a device node with a file.

    Raises:
        StoreError: the file or its directory cannot be written.
    """
    path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0  # not there yet (or unreachable: the temporary file says why)
    if stat.S_ISDIR(mode):
        raise StoreError(f"{path}: is a folder; give the path of a report file")
    if mode and not stat.S_ISREG(mode):
        _write_into(path, text)
        return
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write the report ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the report from CI readers
        os.replace(temporary, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def _write_into(path: Path, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write the report ({exc.strerror or exc})") from None

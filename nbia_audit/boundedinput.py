"""Reading untrusted input within bounds: file size and kind, and short excerpts of values.

Specs and manifests come from collaborators and portals, and CI runs on them unattended. A
path that names ``/dev/zero``, a FIFO or a directory must fail at once, not hang or fill
memory, and no error message may echo more than a short excerpt of what it read (a validator
once printed a 580 MB value).
"""

from __future__ import annotations

import errno
import os
import reprlib
import stat
from pathlib import Path

from nbia_audit.errors import SpecError

__all__ = ["EXCERPT_CHARS", "excerpt", "nonblocking_opener", "read_bounded"]

# O_NONBLOCK (POSIX only) keeps open() of a FIFO with no writer from blocking forever.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS = os.O_RDONLY | _NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

EXCERPT_CHARS = 60
"""At most this many characters of any value an error message quotes (plus an ellipsis)."""


def read_bounded(path: str | Path, *, limit: int, what: str) -> bytes:
    """The bytes of the regular file at ``path``, if it holds at most ``limit`` bytes.

    ``what`` names the file for messages ("spec", "manifest"). The file is opened without
    blocking (a FIFO with no writer would otherwise wait forever), must be a regular file
    (not a device, FIFO, socket or directory), and is read only up to ``limit + 1`` bytes, so
    a file that grows while read cannot grow memory with it.

    Raises:
        SpecError: missing, unreadable, not a regular file, or larger than ``limit``.
    """
    name = str(path)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except FileNotFoundError:
        raise SpecError("no such file", path=name, hint=f"check the path of the {what}") from None
    except IsADirectoryError:
        raise _not_regular(name, what, "a directory") from None
    except OSError as exc:
        raise SpecError(f"cannot read the {what}: {exc.strerror or exc}", path=name) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(name, what, _kind(mode))
        if _NONBLOCK:
            os.set_blocking(fd, True)  # a regular file: plain reads from here on
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise _not_regular(name, what, "a directory") from None
        raise SpecError(f"cannot read the {what}: {exc.strerror or exc}", path=name) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise SpecError(
            f"the {what} is larger than {_size(limit)}, the most nbia-audit reads",
            path=name,
            hint=f"is this really a {what}? split a larger one into several",
        )
    return data


def nonblocking_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that cannot block on a FIFO with no writer; the caller
    must then refuse anything but a regular file (whose reads O_NONBLOCK does not change)."""
    return os.open(path, flags | _NONBLOCK)


def excerpt(value: object) -> str:
    """A short printable representation of ``value`` for an error message.

    Strings are cut to :data:`EXCERPT_CHARS` characters; lists and mappings show their
    first few items, a few levels deep. The cost is bounded whatever the value's size,
    including values that share structure (YAML aliases).
    """
    return _REPR.repr(value)


class _ShortRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxdict = 4
        self.maxstring = EXCERPT_CHARS
        self.maxother = EXCERPT_CHARS
        self.maxlong = 40

    def repr1(self, x: object, level: int) -> str:
        # reprlib picks a method by the type's name, so the YAML loader's list and dict
        # subclasses would fall back to the unbounded builtin repr.
        if isinstance(x, list) and type(x) is not list:
            return self.repr_list(list(x[: self.maxlist + 1]), level)
        if isinstance(x, dict) and type(x) is not dict:
            return self.repr_dict(x, level)
        if isinstance(x, str) and type(x) is not str:
            x = str(x)
        text = super().repr1(x, level)
        if len(text) > 4 * EXCERPT_CHARS:  # any other type whose repr is long
            text = text[: 4 * EXCERPT_CHARS] + "..."
        return text


_REPR = _ShortRepr()


def _not_regular(name: str, what: str, kind: str) -> SpecError:
    return SpecError(
        f"is {kind}, not a {what} file", path=name, hint=f"give the path of a {what} file"
    )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _size(limit: int) -> str:
    return f"{limit // (1 << 20)} MiB" if limit >= 1 << 20 else f"{limit} bytes"

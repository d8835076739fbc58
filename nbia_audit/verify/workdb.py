"""A per-run SQLite work database in a private temporary folder.

``verify`` must not hold a Python object per locked image (issue 14: NLST pins 21 M
images). What a run needs to look up by image (its series, its archive MD5, which image a
content MD5 names) is streamed once into a SQLite file in a folder of its own
(``tempfile.mkdtemp``: private to this user, on local disk, so nothing of SQLite's locking
or journalling depends on the copy's file system), queried by point lookups, and removed
when the run ends (also on error; a run that forgets to close it leaves it to the garbage
collector, never to another run).

Worker threads query it too: each thread gets a connection of its own.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import urllib.parse
import weakref
from pathlib import Path

__all__ = ["WorkDB", "private_folder"]


def private_folder(prefix: str) -> Path:
    """A fresh folder only this user can read (``tempfile.mkdtemp`` makes it 0700)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def _discard(folder: Path, connections: list[sqlite3.Connection]) -> None:
    for connection in connections:
        connection.close()
    connections.clear()
    shutil.rmtree(folder, ignore_errors=True)


class WorkDB:
    """One SQLite file in a private temporary folder, one connection per thread.

    The file is written by one thread, then :meth:`freeze` makes it read-only: every
    connection opened afterwards (one per thread, on first use) reads it as immutable, so
    SQLite takes no lock and checks for no change at each query (half the cost of a point
    lookup).
    """

    def __init__(self, name: str = "work.db") -> None:
        self.folder = private_folder("nbia-audit-verify-")
        self.path = self.folder / name
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        self._frozen = False
        self._finalizer = weakref.finalize(self, _discard, self.folder, self._connections)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            with self._guard:
                if self._closed:
                    raise RuntimeError("the work database was closed")
                # check_same_thread off only so close() may close it from the owning thread
                # of the WorkDB: each connection is used by the thread that opened it.
                if self._frozen:
                    uri = f"file:{urllib.parse.quote(str(self.path))}?immutable=1"
                    connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
                else:
                    connection = sqlite3.connect(self.path, check_same_thread=False)
                    # Private and thrown away at the end: nothing to recover after a crash.
                    connection.execute("PRAGMA journal_mode=OFF")
                    connection.execute("PRAGMA synchronous=OFF")
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def freeze(self) -> None:
        """The file is complete: from now on it is only read (call from the writing thread,
        after its last commit)."""
        with self._guard:
            self._frozen = True
            writer: sqlite3.Connection | None = getattr(self._local, "connection", None)
            if writer is not None:
                self._connections.remove(writer)
                writer.close()
                self._local.connection = None

    def close(self) -> None:
        """Close every connection and remove the folder (idempotent)."""
        with self._guard:
            self._closed = True
        self._finalizer()

    def __enter__(self) -> WorkDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

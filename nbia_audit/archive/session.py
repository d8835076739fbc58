"""An archive for the length of one public verb call: opened from what the caller named,
closed afterwards only if it was opened here.

The public verbs (``nbia_audit.lock_spec``, ``fetch_copy``, ``detect_drift``, ...) take the
archive as a server name, a URL, a client or a view; a client the caller made is the
caller's to close (they may go on using it), one made from a name or URL is logged out here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from nbia_audit.archive.protocol import Archive
from nbia_audit.archive.resolve import open_archive
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.servers import ApiFamily
from nbia_audit.errors import SpecError

__all__ = ["ArchiveTarget", "archive_session"]

ArchiveTarget = str | NbiaClient | Archive


@contextmanager
def archive_session(
    target: ArchiveTarget, *, api: str, credentials: Credentials | None = None
) -> Iterator[Archive]:
    """The archive ``target`` names, for a ``with`` block.

    ``api`` is the family of the spec or lock at hand, used when a client is made here
    (a client or view passed in keeps its own); ``credentials`` only apply then too.

    Raises:
        SpecError: an unknown server name or API family, or credentials given with a client
            made elsewhere (give them to that client).
    """
    made_here = isinstance(target, str)
    try:
        if isinstance(target, str):
            archive = open_archive(target, api=cast("ApiFamily", api), credentials=credentials)
        else:
            archive = open_archive(target, credentials=credentials)
    except ValueError as exc:
        raise SpecError(str(exc), path="archive") from None
    try:
        yield archive
    finally:
        if made_here:
            archive.close()

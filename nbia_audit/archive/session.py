"""An archive for the length of one public verb call: opened from what the caller named,
closed afterwards only if it was opened here.

The public verbs (``nbia_audit.lock_spec``, ``fetch_copy``, ``detect_drift``, ...) take the
archive as a server name, a URL, a client or a view; a client the caller made is the
caller's to close (they may go on using it), one made from a name or URL is logged out here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

from nbia_audit.archive.protocol import Archive
from nbia_audit.archive.resolve import open_archive
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.servers import ApiFamily
from nbia_audit.errors import SpecError
from nbia_audit.models import LockHeader

__all__ = ["ArchiveTarget", "archive_session", "opener_for_lock"]

ArchiveTarget = str | NbiaClient | Archive


@contextmanager
def archive_session(
    target: ArchiveTarget, *, api: str | None = None, credentials: Credentials | None = None
) -> Iterator[Archive]:
    """The archive ``target`` names, for a ``with`` block.

    ``api`` is the family of the spec or lock at hand, used when a client is made here
    (a client or view passed in keeps its own); ``credentials`` only apply then too.

    Raises:
        SpecError: an unknown server name or API family, or credentials given with a client
            made elsewhere (give them to that client).
    """
    archive = _open(target, api=api, credentials=credentials)
    try:
        yield archive
    finally:
        if isinstance(target, str):  # made here from a name or URL: ours to close
            archive.close()


def opener_for_lock(
    target: str | None, *, credentials: Credentials | None = None
) -> Callable[[LockHeader], Archive]:
    """A factory for verbs that read the lock first (``check_drift``): it opens the server
    ``target`` names, or by default the lock's own, with the lock's API family. The verb
    closes what the factory opened; the lock is read once, by the verb."""

    def opened(header: LockHeader) -> Archive:
        server = target or header.server or header.base_url
        return _open(server, api=header.api, credentials=credentials)

    return opened


def _open(target: ArchiveTarget, *, api: str | None, credentials: Credentials | None) -> Archive:
    try:
        if isinstance(target, str):
            return open_archive(target, api=cast("ApiFamily", api), credentials=credentials)
        return open_archive(target, credentials=credentials)
    except ValueError as exc:
        raise SpecError(str(exc), path="archive") from None

"""One way to turn what a caller names as "the archive" into the view the verbs use.

A caller of the public API names the archive as a server alias (``public``, ``nlst``), a
URL, an ``NbiaClient`` it configured itself, or an ``ArchiveView`` over one. The verbs all
accept any of these; this module is where the forms meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.client.auth import Credentials
from nbia_audit.client.servers import ApiFamily
from nbia_audit.errors import SpecError

__all__ = ["ArchiveTarget", "archive_session", "open_archive"]

ArchiveTarget = str | NbiaClient | ArchiveView


def open_archive(
    target: ArchiveTarget, *, api: str | None = None, credentials: Credentials | None = None
) -> ArchiveView:
    """The archive view for ``target``: a server alias or URL, a client, or a view.

    A client or view is used as given (``api`` and ``credentials`` are then its own); for
    an alias or URL a new client is made with ``api`` (default ``v4``) and ``credentials``
    (default: the guest account). The caller closes a client made here
    (``view.client.close()``), or uses :func:`archive_session`, which does.

    Raises:
        SpecError: an unknown server alias, a URL that is not an NBIA server's, or an
            unknown API family.
    """
    if isinstance(target, ArchiveView):
        return target
    if isinstance(target, NbiaClient):
        return ArchiveView(target)
    try:
        client = NbiaClient(target, api=cast("ApiFamily", api or "v4"), credentials=credentials)
    except ValueError as exc:
        raise SpecError(str(exc), path="<archive>", key="server") from None
    return ArchiveView(client)


@contextmanager
def archive_session(
    target: ArchiveTarget, *, api: str | None = None, credentials: Credentials | None = None
) -> Iterator[ArchiveView]:
    """:func:`open_archive` for the length of a ``with`` block.

    A client made here is closed (logged out) when the block ends; a client or view the
    caller passed in is left open, since the caller may go on using it.

    Raises:
        SpecError: as for :func:`open_archive`.
    """
    view = open_archive(target, api=api, credentials=credentials)
    made_here = isinstance(target, str)
    try:
        yield view
    finally:
        if made_here:
            view.client.close()

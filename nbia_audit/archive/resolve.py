"""The one way to get an archive view: from a server URL, a server name, a client, or a view.

(A stand-in with the signature and behaviour of h-archive's ``open_archive``, which returns
its one ``Archive`` protocol; the public verbs use it through :mod:`archive.session`.)
"""

from __future__ import annotations

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.servers import ApiFamily

__all__ = ["open_archive"]


def open_archive(
    target: str | NbiaClient | ArchiveView,
    *,
    api: ApiFamily | None = None,
    credentials: Credentials | None = None,
) -> ArchiveView:
    """The archive ``target`` names, ready for any verb.

    ``target`` is a server as a spec's ``server:`` names it (``public``, ``nlst`` or an
    http(s) URL of ``…/nbia-api/services``), an ``NbiaClient``, or a view already (returned
    as it is). ``api`` (default ``v4``) and ``credentials`` (default: anonymous) apply only
    when a client is made here; the caller closes a client made here (``view.client``).

    Raises:
        ValueError: an unknown server name or API family, or ``api``/``credentials`` given
            with a client or view made elsewhere.
    """
    if isinstance(target, str):
        return ArchiveView(NbiaClient(target, api=api or "v4", credentials=credentials))
    if api is not None or credentials is not None:
        # Silently ignoring them would run as another account or API family than asked.
        raise ValueError(
            "api and credentials apply only when the archive is opened by server name or URL;"
            " give them to the NbiaClient instead"
        )
    if isinstance(target, NbiaClient):
        return ArchiveView(target)
    return target

"""The one way to get an Archive: from a server URL, a server name, a client, or an Archive."""

from __future__ import annotations

from nbia_audit.archive.protocol import Archive
from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.servers import ApiFamily

__all__ = ["open_archive"]


def open_archive(
    target: str | NbiaClient | Archive,
    *,
    api: ApiFamily | None = None,
    credentials: Credentials | None = None,
) -> Archive:
    """The archive ``target`` names, ready for any verb.

    ``target`` is a server as a spec's ``server:`` names it (``public``, ``nlst`` or an
    http(s) URL of ``…/nbia-api/services``), an ``NbiaClient``, or an Archive already (returned
    as it is). ``api`` (default ``v4``) and ``credentials`` (default: anonymous) apply only
    when a client is made here; an archive made from a name or URL owns its client, so
    ``close()`` it when done.

    Raises:
        ValueError: an unknown server name or API family, a URL that embeds credentials,
            ``api``/``credentials`` given with a client or archive made elsewhere, or a
            ``target`` that is none of these.
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
    if not isinstance(target, Archive):
        raise ValueError(
            f"not an archive: {type(target).__name__}; give a server name (public, nlst), an"
            " http(s) URL of .../nbia-api/services, an NbiaClient or an Archive"
        )
    return target

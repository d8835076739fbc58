"""Server aliases, API families and the URLs the client talks to.

NBIA serves its REST API below ``<host>/nbia-api/services`` and its OAuth endpoints below
``<host>/nbia-api`` (protocol §0 "Hosts and paths", §4.1, §4.2). Every path the client calls is
built here, from one :class:`ServerUrls` value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

__all__ = [
    "API_FAMILIES",
    "SERVER_ALIASES",
    "ApiFamily",
    "ServerUrls",
    "resolve_server",
]

ApiFamily = Literal["v4", "v2", "v1"]
"""Which versioned endpoint family the client prefers (protocol §0 "Path families")."""

API_FAMILIES: tuple[ApiFamily, ...] = get_args(ApiFamily)

SERVER_ALIASES: dict[str, str] = {
    "public": "https://services.cancerimagingarchive.net/nbia-api/services",
    # NLST has its own host running the same software (protocol §0).
    "nlst": "https://nlst.cancerimagingarchive.net/nbia-api/services",
}


@dataclass(frozen=True, slots=True)
class ServerUrls:
    """The three base URLs of one NBIA server.

    ``services`` is the REST base (``…/nbia-api/services``); ``token`` and ``logout`` are the
    OAuth endpoints that sit one level up, next to ``services`` (protocol §4.1, §4.2).
    """

    services: str
    token: str
    logout: str

    def endpoint(self, path: str) -> str:
        """Return the absolute URL of ``path`` (e.g. ``"v4/getSeries"``) below ``services``."""
        return f"{self.services}/{path.lstrip('/')}"


def resolve_server(server: str) -> ServerUrls:
    """Turn an alias (``public``, ``nlst``) or a URL into the server's base URLs.

    A URL may name the services base (``…/nbia-api/services``) or the API root
    (``…/nbia-api``), in which case ``/services`` is appended. The OAuth URLs are derived from
    the API root: ``<root>/oauth/token`` and ``<root>/logout``.

    Raises:
        ValueError: ``server`` is neither a known alias nor an http(s) URL with a host, or
            the URL embeds credentials, a query or a fragment.
    """
    url = SERVER_ALIASES.get(server.strip().lower(), server.strip()).rstrip("/")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Never echo this URL: it holds a secret. Credentials go through Credentials only.
        raise ValueError("an NBIA server URL must not contain a user name or password")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        known = ", ".join(sorted(SERVER_ALIASES))
        raise ValueError(
            f"unknown NBIA server {server!r}: give one of {known} or an http(s) URL "
            "such as https://host/nbia-api/services"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"NBIA server URL {server!r} must not carry a query or fragment")
    if url.endswith("/nbia-api"):
        url += "/services"
    root = url[: -len("/services")] if url.endswith("/services") else url
    return ServerUrls(services=url, token=f"{root}/oauth/token", logout=f"{root}/logout")

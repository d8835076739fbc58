"""``NbiaClient``: one object for every NBIA call the auditor makes, shareable between threads."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from types import TracebackType

import requests

from nbia_audit.client.auth import Credentials, TokenManager
from nbia_audit.client.core import Caller
from nbia_audit.client.download import DEFAULT_CHUNK_SIZE
from nbia_audit.client.hashes import HashCalls
from nbia_audit.client.manifests import ManifestCalls
from nbia_audit.client.queries import MetadataQueries
from nbia_audit.client.servers import API_FAMILIES, ApiFamily, ServerUrls, resolve_server
from nbia_audit.client.transport import RetryPolicy, Timeouts, Transport
from nbia_audit.errors import ApiError
from nbia_audit.version import __version__

__all__ = ["DEFAULT_METADATA_BATCH_SIZE", "NbiaClient"]

log = logging.getLogger(__name__)

DEFAULT_METADATA_BATCH_SIZE = 1000
"""UIDs per ``getSeriesMetadata`` call: well under tcia_utils' 10,000, so one slow call stays
short and a failure costs little to retry (protocol §8)."""


class NbiaClient(MetadataQueries, ManifestCalls, HashCalls):
    """A client for one NBIA server and one API family.

    Without credentials it talks to v4 anonymously (public data, protocol §4.3 recommendation);
    endpoints that only exist in the token-requiring families log in as ``nbia_guest``. With
    credentials every call that accepts a token sends the user's. The client is safe to share
    between threads; close it (or use ``with``) to log out and release connections.

    >>> with NbiaClient("public") as client:                        # doctest: +SKIP
    ...     series = client.series(collection="4D-Lung")
    ...     client.series_hash(series[0].series_uid)
    """

    def __init__(
        self,
        server: str = "public",
        *,
        api: ApiFamily = "v4",
        credentials: Credentials | None = None,
        session: requests.Session | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metadata_batch_size: int = DEFAULT_METADATA_BATCH_SIZE,
        download_chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        """Configure the client; nothing is sent until the first call.

        ``server`` is ``public``, ``nlst`` or a URL (``…/nbia-api/services`` or ``…/nbia-api``).
        ``session`` is used as given (the client closes only a session it created itself).
        ``sleep``, ``clock`` (epoch seconds) and ``rng`` drive backoff and token expiry.

        Raises:
            ValueError: an unknown server alias or API family, or a batch or chunk size below 1.
        """
        if api not in API_FAMILIES:
            families = ", ".join(API_FAMILIES)
            raise ValueError(f"unknown NBIA API family {api!r}; use one of {families}")
        if metadata_batch_size < 1 or download_chunk_size < 1:
            raise ValueError("metadata_batch_size and download_chunk_size must be at least 1")
        self._urls: ServerUrls = resolve_server(server)
        self._family: ApiFamily = api
        self._owns_session = session is None
        self._session = session if session is not None else _new_session()
        transport = Transport(
            self._session, retry=retry, timeouts=timeouts, sleep=sleep, clock=clock, rng=rng
        )
        tokens = TokenManager(transport, self._urls, credentials or Credentials.guest())
        self._caller = Caller(
            transport, self._urls, tokens, has_credentials=credentials is not None
        )
        self._metadata_batch_size = metadata_batch_size
        self._download_chunk_size = download_chunk_size

    def __repr__(self) -> str:
        return (
            f"NbiaClient(server={self._urls.services!r}, api={self._family!r}, "
            f"user={self._caller.tokens.username!r})"
        )

    @property
    def urls(self) -> ServerUrls:
        """The server's REST, token and logout URLs."""
        return self._urls

    @property
    def api(self) -> ApiFamily:
        """The API family this client prefers."""
        return self._family

    @property
    def username(self) -> str:
        """The account used whenever a token is sent (``nbia_guest`` without credentials)."""
        return self._caller.tokens.username

    def logout(self) -> None:
        """End the server-side session, if one was opened; later calls log in again.

        Raises:
            AuthError: the server refused the logout.
            ApiUnavailable: the logout endpoint could not be reached.
        """
        self._caller.tokens.logout()

    def close(self) -> None:
        """Log out (best effort: a failure is only logged) and release owned connections."""
        try:
            self.logout()
        except ApiError as exc:
            log.debug("logout on close failed: %s", exc)
        finally:
            if self._owns_session:
                self._session.close()

    def __enter__(self) -> NbiaClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_POOL_SIZE = 32
"""Connections kept per host: enough for a typical pool of download workers."""


def _new_session() -> requests.Session:
    session = requests.Session()
    # Retries are ours (transport.py); the adapter must not retry behind our back.
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=_POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = f"nbia-audit/{__version__} (+python-requests)"
    return session

"""The state behind the HTTP front: corpus, tokens, MD5 cache, faults and the request log."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nbia_audit.emulator.auth import GUEST_USER, TokenStore
from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.faults import FaultPlan
from nbia_audit.emulator.hierarchy import MD5_CACHE_SECONDS, MD5Cache
from nbia_audit.emulator.model import Series
from nbia_audit.emulator.search_cache import SEARCH_CACHE_IDLE, SEARCH_CACHE_LIFE, SearchCache


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the emulator saw it (control-API calls are not recorded)."""

    method: str
    path: str
    endpoint: str  # route name ("getSeries", "token", ...) or "" when no route matched
    params: tuple[tuple[str, str], ...]  # query then form fields, in order
    status: int  # 0 when the connection was reset without a response
    token_sent: bool
    family: str = ""  # "v1", "v2", "v4", "adv" or "auth"
    client_port: int = 0  # the peer's port: one value per TCP connection


class RequestLog:
    """Append-only, thread-safe list of ``RequestRecord``."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        """Record one request."""
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        """A copy of every record so far."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()


class Backend:
    """Everything handlers need; one per emulator."""

    def __init__(
        self,
        corpus: Corpus,
        *,
        users: Mapping[str, str],
        access_ttl: float,
        refresh_ttl: float,
        clock: Callable[[], float],
        md5_cache_life: float = MD5_CACHE_SECONDS,
        search_cache_life: float = SEARCH_CACHE_LIFE,
        search_cache_idle: float = SEARCH_CACHE_IDLE,
        user_agreement: str | None = None,
    ) -> None:
        self.corpus = corpus
        self.clock = clock
        self.tokens = TokenStore(users, access_ttl=access_ttl, refresh_ttl=refresh_ttl, clock=clock)
        self.md5_cache = MD5Cache(clock, md5_cache_life)
        self.search_cache: SearchCache[list[list[Series]]] = SearchCache(
            clock, search_cache_life, search_cache_idle
        )
        # The deployment's optional user-agreement file, appended to every ZIP's LICENSE.
        self.user_agreement = user_agreement
        self.faults = FaultPlan()
        self.log = RequestLog()
        self.origin = "http://127.0.0.1"  # scheme://host:port, set when the server starts

    def sites_for(self, user: str | None) -> frozenset[str]:
        """Collections a user may see: public ones for the guest, all for named users."""
        if user is None:
            return frozenset()
        collections = self.corpus.collections
        if user == GUEST_USER:
            return frozenset(c.name for c in collections if c.public)
        return frozenset(c.name for c in collections)

    @property
    def guest_sites(self) -> frozenset[str]:
        """The guest's authorized collections (what the nightly job uses)."""
        return self.sites_for(GUEST_USER)

    @property
    def download_server_url(self) -> str:
        """``gov.nih.nci.ncia.download.server.url`` as written into manifests."""
        return f"{self.origin}/nbia-download/servlet/DownloadServlet"

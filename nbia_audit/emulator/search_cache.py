"""The simple-search result cache (``restUtil/PatientResultSetCache``, a JCS region).

``SearchUtil#getPatients_v4`` builds a key from the user name and every criterion's type and
value (not the paging fields), and serves a hit without touching the database; only the sort
and the page are applied again. The ``default`` region of ``cache.ccf`` lets an entry live at
most ``MaxLife=21600`` s (6 h) and drop after ``IdleTime=1800`` s without a read. So a series
hidden or added after a search stays invisible to that same search for up to six hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

SEARCH_CACHE_LIFE = 21600.0  # cache.ccf jcs.default.elementattributes.MaxLife
SEARCH_CACHE_IDLE = 1800.0  # cache.ccf jcs.default.elementattributes.IdleTime

T = TypeVar("T")


class SearchCache(Generic[T]):
    """Key -> value with JCS's two expiries (since written, since last read); settable."""

    def __init__(self, clock: Callable[[], float], life: float, idle: float) -> None:
        self._clock = clock
        self.life = life
        self.idle = idle
        self._entries: dict[Hashable, tuple[T, float, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> T | None:
        """The cached value, or None when absent or expired (an expired entry is dropped)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, written, read = entry
            if now - written >= self.life or now - read >= self.idle:
                del self._entries[key]
                return None
            self._entries[key] = (value, written, now)
            return value

    def put(self, key: Hashable, value: T) -> None:
        """Remember a value, fresh."""
        now = self._clock()
        with self._lock:
            self._entries[key] = (value, now, now)

    def clear(self) -> None:
        """Forget everything (a server restart)."""
        with self._lock:
            self._entries.clear()

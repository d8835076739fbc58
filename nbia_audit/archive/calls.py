"""Archive calls run on a shared thread pool, with progress per stage.

Used by selection, pinning and drift: one way to fan calls out and report
``on_progress(stage, done, total)``. Counting them is the archive's job
(:class:`~nbia_audit.archive.counting.CountingArchive`), which also sees calls made alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from nbia_audit.errors import ApiError
from nbia_audit.progress import ProgressCallback

__all__ = ["CallRunner"]

T = TypeVar("T")


class CallRunner:
    """Runs archive calls on ``pool``, reporting each stage's progress."""

    def __init__(self, pool: ThreadPoolExecutor, on_progress: ProgressCallback | None = None):
        self.pool = pool
        self.on_progress = on_progress
        self._lock = threading.Lock()

    def run(self, stage: str, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Make every call on the pool; results in order.

        Raises:
            ApiError: a call failed (the first failure in order).
        """
        results = self._map(stage, calls)
        for result in results:
            if isinstance(result, ApiError):
                raise result
        return results  # type: ignore[return-value]

    def run_keeping_errors(
        self, stage: str, calls: Sequence[Callable[[], T]]
    ) -> list[T | ApiError]:
        """As :meth:`run`, but a failed call comes back as its error, so one unreachable
        node can be reported as not checked instead of ending the whole run."""
        return self._map(stage, calls)

    def _map(self, stage: str, calls: Sequence[Callable[[], T]]) -> list[T | ApiError]:
        total = len(calls)
        done = 0

        def one(call: Callable[[], T]) -> T | ApiError:
            nonlocal done
            try:
                result: T | ApiError = call()
            except ApiError as exc:
                result = exc
            with self._lock:
                done += 1
                if self.on_progress:
                    self.on_progress(stage, done, total)
            return result

        return list(self.pool.map(one, calls))

"""Stream one series ZIP to disk in large chunks, restarting when the stream breaks.

NBIA streams ZIPs with chunked transfer and no Content-Length or Range support (protocol §2.1),
so a broken transfer can only be restarted from the beginning, and a cut that ends cleanly is
visible only as a ZIP without its central directory. The file is written chunk by chunk; at no
point is the ZIP held in memory.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import requests

from nbia_audit.client.core import Caller, Route
from nbia_audit.client.records import SeriesDownload
from nbia_audit.errors import DownloadError

__all__ = ["DEFAULT_CHUNK_SIZE", "stream_series_zip"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1 << 20
"""1 MiB: large enough to keep per-chunk overhead negligible, small enough to bound memory."""

ProgressCallback = Callable[[int], None]


class _BrokenStream(Exception):
    """One attempt ended early; ``received`` bytes of it were written and must be discarded."""

    def __init__(self, reason: str, received: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


def stream_series_zip(
    caller: Caller,
    route: Route,
    series_uid: str,
    dest: Path,
    *,
    on_bytes: ProgressCallback | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SeriesDownload:
    """Download ``route`` for ``series_uid`` into ``dest``; see ``NbiaClient.download_series``.

    After a ``DownloadError`` ``dest`` may hold a partial file; the caller removes it.

    Raises:
        ApiBadRequest, ApiUnauthorized, ApiServerError, ApiResponseError: error statuses.
        ApiUnavailable: the server could not be reached.
        DownloadError: every attempt broke off, or ``dest`` could not be written.
    """
    policy = caller.transport.retry
    last: _BrokenStream | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            received, entries = _attempt(caller, route, series_uid, dest, on_bytes, chunk_size)
        except _BrokenStream as broken:
            last = broken
            if on_bytes is not None and broken.received:
                on_bytes(-broken.received)
            if attempt < policy.attempts:
                delay = policy.backoff(attempt, caller.transport.rng)
                log.debug("%s: %s; restarting in %.2fs", route.name, broken.reason, delay)
                caller.transport.sleep(delay)
            continue
        return SeriesDownload(series_uid, dest, received, entries, attempts=attempt)
    assert last is not None
    raise DownloadError(
        f"{route.name}: the download of series {series_uid} broke off in all "
        f"{policy.attempts} attempts ({last.reason}); try again later"
    )


def _attempt(
    caller: Caller,
    route: Route,
    series_uid: str,
    dest: Path,
    on_bytes: ProgressCallback | None,
    chunk_size: int,
) -> tuple[int, tuple[str, ...]]:
    response = caller.open_stream(route, params={"SeriesInstanceUID": series_uid})
    received = 0
    try:
        # requests' exceptions are OSErrors too, so they are caught first.
        with response, dest.open("wb") as sink:
            for chunk in response.iter_content(chunk_size=chunk_size):
                sink.write(chunk)
                received += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
    except requests.RequestException as exc:
        # ChunkedEncodingError (the server cut the chunked body), ConnectionError, read timeout.
        raise _BrokenStream(
            f"stream broken after {received} bytes: {type(exc).__name__}", received
        ) from exc
    except OSError as exc:
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return received, _zip_entries(dest, received)


def _zip_entries(dest: Path, received: int) -> tuple[str, ...]:
    """Return the member names, or treat an unreadable ZIP as a stream cut short."""
    try:
        with zipfile.ZipFile(dest) as archive:
            return tuple(archive.namelist())
    except (zipfile.BadZipFile, EOFError) as exc:
        # Most often a cut that still ended the chunked body cleanly: the central directory
        # at the end of the ZIP never arrived.
        raise _BrokenStream(f"the {received}-byte answer is not a complete ZIP", received) from exc

"""Stream one series ZIP to disk in large chunks, restarting when the stream breaks.

NBIA streams ZIPs with chunked transfer and no Content-Length or Range support (protocol §2.1),
so a broken transfer can only be restarted from the beginning, and a cut that ends cleanly is
visible only as a ZIP without its central directory. The file is written chunk by chunk; at no
point is the ZIP held in memory.

A per-read timeout cannot catch a server that drips (64 bytes every 5 s never times out a read),
so every download also runs under ``StreamLimits``: a total deadline and a minimum throughput,
checked after every network read (``read1`` returns what one read got, so a drip is seen as a
drip and not hidden behind a buffer that waits to fill). A download that breaks either limit is
cut and not restarted here: the caller decides whether the series is worth another try.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from nbia_audit.client.core import Caller, Route
from nbia_audit.client.records import SeriesDownload
from nbia_audit.errors import DownloadError
from nbia_audit.progress import BytesCallback

__all__ = ["DEFAULT_CHUNK_SIZE", "StreamLimits", "stream_series_zip"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1 << 20
"""1 MiB: large enough to keep per-chunk overhead negligible, small enough to bound memory."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How long one series download may take, and how slowly its bytes may arrive.

    ``deadline`` bounds the whole download, restarts included (6 h: a 50 GB series at
    2.5 MB/s). ``min_rate`` (bytes/s) is judged over each successive ``window`` seconds
    (16 KiB/s over 60 s: a drip of 64 bytes every 5 s is cut after a minute, while a
    merely slow link passes). ``clock`` returns monotonic seconds; tests inject one that
    ticks per call, so the limits are exercised without waiting.
    """

    deadline: float = 6 * 3600.0
    min_rate: float = 16 * 1024.0
    window: float = 60.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.window <= 0 or self.min_rate < 0:
            raise ValueError("StreamLimits needs deadline > 0, window > 0 and min_rate >= 0")


class _Pace:
    """Checks one download against its ``StreamLimits`` after every read."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self.started = limits.clock()
        self.window_started = self.started
        self.window_bytes = 0

    def restart(self) -> None:
        """The body of a new attempt begins: the throughput window starts over, the deadline
        does not. The wait for the answer's headers (NBIA assembles a ZIP before answering)
        is bounded by the read timeout and is not throughput."""
        self.window_started = self.limits.clock()
        self.window_bytes = 0

    def stall_timeout(self, read_timeout: float) -> float | None:
        """A shorter read timeout that lets the throughput rule see a stream that went silent.

        A read that gets nothing for a whole window is below any minimum rate; waiting for the
        transport's longer read timeout would only delay the cut.
        """
        window = self.limits.window
        return window if self.limits.min_rate > 0 and window < read_timeout else None

    def stalled(self) -> str:
        return (
            f"nothing arrived for {self.limits.window:g} s, below the minimum of "
            f"{self.limits.min_rate:.0f} bytes/s"
        )

    def violation(self, received: int) -> str | None:
        """Why the download must be cut after ``received`` more bytes, or None."""
        now = self.limits.clock()
        limits = self.limits
        if now - self.started > limits.deadline:
            return f"it took longer than the {limits.deadline:g} s deadline"
        self.window_bytes += received
        elapsed = now - self.window_started
        if elapsed >= limits.window:
            rate = self.window_bytes / elapsed
            if rate < limits.min_rate:
                return (
                    f"it arrived at {rate:.0f} bytes/s over {elapsed:g} s, below the "
                    f"minimum of {limits.min_rate:.0f} bytes/s"
                )
            self.window_started, self.window_bytes = now, 0
        return None


class _TooSlow(Exception):
    """The download broke its ``StreamLimits``; ``received`` bytes of it were written."""

    def __init__(self, reason: str, received: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


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
    on_bytes: BytesCallback | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: StreamLimits | None = None,
) -> SeriesDownload:
    """Download ``route`` for ``series_uid`` into ``dest``; see ``NbiaClient.download_series``.

    After a ``DownloadError`` ``dest`` may hold a partial file; the caller removes it.

    Raises:
        ApiBadRequest, ApiUnauthorized, ApiServerError, ApiResponseError: error statuses.
        ApiUnavailable: the server could not be reached.
        DownloadError: every attempt broke off, the download broke its ``limits``
            (``StreamLimits()`` by default), or ``dest`` could not be written.
    """
    policy = caller.transport.retry
    pace = _Pace(limits or StreamLimits())
    last: _BrokenStream | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            received, entries = _attempt(
                caller, route, series_uid, dest, on_bytes, chunk_size, pace
            )
        except _TooSlow as slow:
            if on_bytes is not None and slow.received:
                on_bytes(-slow.received)
            raise DownloadError(
                f"{route.name}: the download of series {series_uid} was cut after "
                f"{slow.received} bytes because {slow.reason}; try again later"
            ) from None
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
    on_bytes: BytesCallback | None,
    chunk_size: int,
    pace: _Pace,
) -> tuple[int, tuple[str, ...]]:
    response = caller.open_stream(route, params={"SeriesInstanceUID": series_uid})
    pace.restart()
    stall = pace.stall_timeout(caller.transport.timeouts.read)
    if stall is not None:
        _set_read_timeout(response, stall)
    received = 0
    try:
        # requests' and urllib3's exceptions are OSErrors too, so they are caught first.
        with response, dest.open("wb") as sink:
            while chunk := response.raw.read1(chunk_size, decode_content=True):
                sink.write(chunk)
                received += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                reason = pace.violation(len(chunk))
                if reason is not None:
                    raise _TooSlow(reason, received)
    except urllib3.exceptions.ReadTimeoutError as exc:
        if stall is None:
            raise _BrokenStream(f"stream stalled after {received} bytes", received) from exc
        raise _TooSlow(pace.stalled(), received) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        # ProtocolError (the server cut the body, or sent less than its Content-Length),
        # ReadTimeoutError (a read got nothing for the read timeout), ConnectionError.
        raise _BrokenStream(
            f"stream broken after {received} bytes: {type(exc).__name__}", received
        ) from exc
    except OSError as exc:
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return received, _zip_entries(dest, received)


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Shorten the read timeout of this response's connection (urllib3 resets it for the
    next request on the connection)."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _zip_entries(dest: Path, received: int) -> tuple[str, ...]:
    """Return the member names, or treat an unreadable ZIP as a stream cut short."""
    try:
        with zipfile.ZipFile(dest) as archive:
            return tuple(archive.namelist())
    except (zipfile.BadZipFile, EOFError) as exc:
        # Most often a cut that still ended the chunked body cleanly: the central directory
        # at the end of the ZIP never arrived.
        raise _BrokenStream(f"the {received}-byte answer is not a complete ZIP", received) from exc

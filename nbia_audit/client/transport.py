"""The retrying HTTP layer: timeouts, backoff with full jitter, Retry-After, error translation.

Everything that can go wrong between the client and NBIA below the level of "what does this
endpoint mean" is handled here, and every third-party exception is translated into the
``nbia_audit.errors`` tree at this boundary (``raise … from exc``).

Retried: connection errors, timeouts, broken chunked bodies, HTTP 429 and every 5xx (NBIA's
uncaught exceptions answer 500 "Server was not able to process your request", protocol §8;
its infrastructure may rate-limit although the application never does). Not retried: every other
4xx, which NBIA uses for deterministic errors (protocol §8).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
import urllib3

from nbia_audit.client.redact import excerpt
from nbia_audit.errors import (
    ApiBadRequest,
    ApiResponseError,
    ApiServerError,
    ApiUnauthorized,
    ApiUnavailable,
)

__all__ = [
    "MAX_ANSWER_BYTES",
    "AnswerTooLarge",
    "AnswerTooSlow",
    "RetryPolicy",
    "Timeouts",
    "Transport",
    "parse_retry_after",
    "raise_for_status",
    "server_message",
]

log = logging.getLogger(__name__)

FormData = Mapping[str, str | Sequence[str]]
"""Form fields or query parameters; a sequence value repeats the field (NBIA's ``list``)."""

_MESSAGE_LIMIT = 500
"""How much of a server's error body is kept in an exception (NBIA's are one line)."""

# Failures where the request may not have reached the application, or the answer was cut:
# worth another try. Other RequestExceptions (bad URL, too many redirects) are deterministic.
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)

MAX_ANSWER_BYTES = 512 << 20
"""No NBIA metadata answer comes near this (NLST's whole ``getSeries`` is about 150 MB); a
larger one is a broken or hostile server, refused before it exhausts memory."""

_ANSWER_CHUNK = 1 << 16


class AnswerTooSlow(requests.Timeout):
    """A metadata answer outlasted ``Timeouts.answer`` (a drip): retried like a timeout."""


class AnswerTooLarge(requests.exceptions.ContentDecodingError):
    """A metadata answer outgrew ``MAX_ANSWER_BYTES``: not retried, the server is broken."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry a failed request.

    ``attempts`` counts every try including the first. The n-th retry waits a uniformly random
    time in ``[0, min(cap, base * 2**(n-1))]`` ("full jitter"), so many workers that failed
    together do not retry together. A ``Retry-After`` header is honoured instead, up to
    ``retry_after_cap`` seconds.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if min(self.base, self.cap, self.retry_after_cap) < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Return the full-jitter delay before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.cap, self.base * 2.0 ** max(retry - 1, 0))
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, between bytes received, and for a whole answer.

    ``answer`` bounds reading one metadata answer (not a ZIP download, which has its own
    ``StreamLimits``): a per-read timeout alone never fires on a server that drips a few
    bytes every few seconds. The largest real answer (``getSeries`` of NLST, about 150 MB)
    arrives in well under a minute.
    """

    connect: float = 10.0
    read: float = 120.0
    answer: float = 600.0

    def __post_init__(self) -> None:
        if min(self.connect, self.read, self.answer) <= 0:
            raise ValueError("Timeouts must be positive")

    def as_tuple(self) -> tuple[float, float]:
        """Return the ``(connect, read)`` pair that requests expects."""
        return (self.connect, self.read)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds, or None if unusable.

    The header is either a number of seconds or an HTTP date (RFC 9110 §10.2.3); ``now`` is the
    current time in seconds since the epoch, for the date form.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def server_message(response: requests.Response) -> str:
    """Return the server's error text, trimmed, whatever the response claims its type is.

    NBIA labels many plain-text error bodies ``application/json`` (protocol §2.1, §8), so the
    body is read as text and never parsed. A server may echo what it was sent, so the text is
    redacted of every known secret before it is shortened (``redact.excerpt``).
    """
    try:
        raw = response.content or b""
    except requests.RequestException:
        return ""
    return excerpt(raw, _MESSAGE_LIMIT)


def raise_for_status(response: requests.Response, endpoint: str) -> None:
    """Translate an error status into the exception tree; return quietly on success.

    Raises:
        ApiBadRequest: HTTP 400, NBIA's answer to a missing or unknown parameter or an
            inaccessible series (protocol §8).
        ApiUnauthorized: HTTP 401, the bearer token was rejected.
        ApiServerError: HTTP 5xx.
        ApiResponseError: any other status of 400 or above.
    """
    status = response.status_code
    if status < 400:
        return
    text = server_message(response)
    shown = f": {text}" if text else ""
    error: type[ApiResponseError]
    if status == 400:
        error, what = ApiBadRequest, f"the server rejected the request (HTTP 400){shown}"
    elif status == 401:
        # Only raised once a renewed token was refused too (core.Caller renews first).
        error, what = (
            ApiUnauthorized,
            (
                "the server refused access (HTTP 401), also with a fresh token; check that the "
                "account (NBIA_USER) exists and may access this data"
            ),
        )
    elif status >= 500:
        error, what = ApiServerError, f"the server failed (HTTP {status}){shown}; try again later"
    else:
        error, what = ApiResponseError, f"unexpected HTTP {status}{shown}; is the server URL right?"
    raise error(f"{endpoint}: {what}", status=status, endpoint=endpoint, server_message=text)


class Transport:
    """Send one logical request, retrying transient failures under a :class:`RetryPolicy`.

    ``sleep``, ``clock`` (seconds since the epoch) and ``rng`` are injected so tests can run
    the backoff without waiting and without randomness.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.session = session
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()

    def send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        params: FormData | None = None,
        data: FormData | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        idempotent: bool = True,
    ) -> requests.Response:
        """Send the request and return the first response that is not worth retrying.

        The returned response may still carry a 4xx status; :func:`raise_for_status` turns it
        into an exception. A request that is not ``idempotent`` is retried only when the server
        certainly did not act on it (connect timeout, HTTP 429).

        Raises:
            ApiUnavailable: the server could not be reached, kept timing out or kept rate
                limiting through every attempt.
            ApiServerError: the server kept answering 5xx through every attempt.
        """
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            final = attempt == attempts
            try:
                response = self._request_once(method, url, params, data, headers, stream)
            except requests.RequestException as exc:
                if final or not _worth_retrying(exc, idempotent):
                    raise _unavailable(endpoint, url, attempt, exc) from exc
                self._pause(endpoint, type(exc).__name__, attempt, None)
                continue
            status = response.status_code
            if status != 429 and (status < 500 or not idempotent):
                return response
            if final:
                self._exhausted(response, endpoint, attempt)
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            response.close()
            self._pause(endpoint, f"HTTP {status}", attempt, retry_after)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _request_once(
        self,
        method: str,
        url: str,
        params: FormData | None,
        data: FormData | None,
        headers: Mapping[str, str] | None,
        stream: bool,
    ) -> requests.Response:
        extra: dict[str, Any] = {}
        if params is not None:
            extra["params"] = _as_pairs(params)
        if data is not None:
            extra["data"] = _as_pairs(data)
        started = self.clock()
        # TLS verification stays on even if the injected session turned it off; a session's
        # own CA bundle (a path) is kept. Every answer is streamed: a metadata answer is then
        # read here under a total deadline and a size cap, which requests' own read has not.
        response = self.session.request(
            method,
            url,
            headers=dict(headers or {}),
            timeout=self.timeouts.as_tuple(),
            stream=True,
            verify=self.session.verify or True,
            **extra,
        )
        if not stream:
            self._read_answer(response, started)
        return response

    def _read_answer(self, response: requests.Response, started: float) -> None:
        """Read the whole body into ``response`` (as requests would), bounded in time and size.

        ``read1`` returns what one network read got, so a drip is seen read by read.
        """
        body = bytearray()
        try:
            while chunk := response.raw.read1(_ANSWER_CHUNK, decode_content=True):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise AnswerTooLarge(
                        f"the answer grew beyond {MAX_ANSWER_BYTES >> 20} MiB; no NBIA answer "
                        "is that large"
                    )
                if self.clock() - started > self.timeouts.answer:
                    raise AnswerTooSlow(
                        f"the answer took longer than {self.timeouts.answer:g} s "
                        f"({len(body)} bytes arrived)"
                    )
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
            response.close()
            raise requests.ReadTimeout(str(exc)) from exc
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
            response.close()
            raise requests.exceptions.ChunkedEncodingError(str(exc)) from exc
        except requests.RequestException:
            response.close()
            raise
        # What requests itself does once a body is read: .content and .text serve it from here.
        response._content = bytes(body)
        response._content_consumed = True  # type: ignore[attr-defined]
        response.close()  # the body was read to its end: the connection goes back to the pool

    def pause_before_retry(self, endpoint: str, reason: str, attempt: int) -> None:
        """Wait as the policy says before retry number ``attempt`` of a failed answer.

        For faults found above this layer (a 200 whose body is not what the endpoint
        documents), so they back off exactly like a 5xx.
        """
        self._pause(endpoint, reason, attempt, None)

    def _pause(self, endpoint: str, reason: str, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = min(retry_after, self.retry.retry_after_cap)
        else:
            delay = self.retry.backoff(attempt, self.rng)
        log.debug(
            "%s: %s on attempt %d/%d; retrying in %.2fs",
            endpoint,
            reason,
            attempt,
            self.retry.attempts,
            delay,
        )
        self.sleep(delay)

    def _exhausted(self, response: requests.Response, endpoint: str, attempt: int) -> NoReturn:
        if response.status_code == 429:
            response.close()
            raise ApiUnavailable(
                f"{endpoint}: the server kept rate-limiting requests (HTTP 429) through "
                f"{attempt} attempts; try again later or with fewer parallel workers"
            )
        text = server_message(response)
        shown = f": {text}" if text else ""
        raise ApiServerError(
            f"{endpoint}: the server failed (HTTP {response.status_code}) through {attempt} "
            f"attempts{shown}; try again later",
            status=response.status_code,
            endpoint=endpoint,
            server_message=text,
        )


def _as_pairs(fields: FormData) -> list[tuple[str, str]]:
    """Flatten fields into (name, value) pairs, repeating a name for each sequence item."""
    pairs: list[tuple[str, str]] = []
    for name, value in fields.items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, item) for item in value)
    return pairs


def _worth_retrying(exc: requests.RequestException, idempotent: bool) -> bool:
    if not idempotent:
        # Only a failed connect proves the server never saw a non-idempotent request.
        return isinstance(exc, requests.ConnectTimeout)
    return isinstance(exc, _TRANSIENT)


def _unavailable(
    endpoint: str, url: str, attempt: int, exc: requests.RequestException
) -> ApiUnavailable:
    # The URL carries no secret (tokens travel in headers, userinfo is refused in servers.py),
    # but only its host is useful here.
    host = urlsplit(url).netloc
    tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
    why = type(exc).__name__
    if isinstance(exc, AnswerTooSlow | AnswerTooLarge):
        why = f"{why}: {exc}"
    return ApiUnavailable(
        f"{endpoint}: could not get an answer from {host} ({why}) after "
        f"{tries}; check the network and the server URL, or try again later"
    )

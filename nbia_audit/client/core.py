"""The request pipeline every endpoint call goes through: routing, tokens, NBIA's auth quirks.

On top of the retrying :class:`~nbia_audit.client.transport.Transport` this layer decides whether
a call carries a bearer token, renews the token once when the server answers 401, and refuses to
read an empty answer as "no rows" while a token was sent until the token is proven good:
NBIA's list endpoints swallow a rejected token and answer 200 with an empty body (protocol §4.3).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from nbia_audit.client import parse
from nbia_audit.client.auth import TokenManager
from nbia_audit.client.servers import ApiFamily, ServerUrls
from nbia_audit.client.transport import FormData, Transport, raise_for_status
from nbia_audit.errors import ApiError, ApiProtocolError, ApiServerError, ApiUnauthorized

__all__ = ["Auth", "Caller", "EndpointGroup", "Route", "clean_params", "looks_empty"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_TOKEN_PROBE = "v4/getMD5Hierarchy"
"""Resolves the caller's user before anything else, so a bad token gets 401 (protocol §1.1)."""

_PROBE_FORM = {"SeriesInstanceUID": ""}
"""A well-formed form naming no object: the probe asks for nothing and gets "" back. NBIA's
Jersey resources take ``@FormParam`` fields, and a POST that is not
``application/x-www-form-urlencoded`` fails there; the catch-all mapper makes that a 500
(``UncaughtException.java``), so an empty body would turn every probe into retried 500s."""


class Auth(enum.Enum):
    """When a route carries a bearer token (protocol §0 "Path families", §4.3)."""

    NEVER = "never"  # v1 always runs as guest and ignores tokens
    WITH_CREDENTIALS = "with-credentials"  # v4: guest without a header, the user with one
    ALWAYS = "always"  # v2 and the unversioned "Advanced" API fail (500) without a header


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: its path below ``…/services``, HTTP method and token rule."""

    path: str
    method: str = "GET"
    auth: Auth | None = None

    @property
    def name(self) -> str:
        """The endpoint's name in messages, e.g. ``v4/getSeries``."""
        return self.path

    @property
    def token_rule(self) -> Auth:
        """The explicit rule, or the one implied by the path's version segment."""
        if self.auth is not None:
            return self.auth
        if self.path.startswith("v1/"):
            return Auth.NEVER
        if self.path.startswith("v4/"):
            return Auth.WITH_CREDENTIALS
        return Auth.ALWAYS


class Caller:
    """Sends routed requests with the right token and turns answers into bodies or errors."""

    def __init__(
        self, transport: Transport, urls: ServerUrls, tokens: TokenManager, *, has_credentials: bool
    ) -> None:
        self.transport = transport
        self.urls = urls
        self.tokens = tokens
        self.has_credentials = has_credentials

    def fetch(
        self,
        route: Route,
        *,
        params: FormData | None = None,
        data: FormData | None = None,
        idempotent: bool = True,
    ) -> bytes:
        """Return the body of a successful answer; an empty body is proven, not assumed.

        Raises:
            ApiBadRequest, ApiUnauthorized, ApiServerError, ApiResponseError: error statuses.
            ApiUnavailable: the server could not be reached.
            AuthError: no token could be obtained.
        """
        sent = self._token_for(route)
        try:
            answer = self._send_authorized(route, sent, params, data, idempotent)
        except ApiServerError as exc:
            # Some endpoints fail with 500 on a rejected token (v4/getCollectionDescriptions;
            # the old getData family): before reporting a server failure, prove the token.
            if sent is None or exc.status != 500 or not idempotent or self._token_good(sent, exc):
                raise
            log.debug("%s: HTTP 500 with a rejected token; renewing and asking again", route.name)
            answer = self._send_authorized(route, self.tokens.renew(sent), params, data, idempotent)
        token, body = answer.token, answer.body
        if token is None or not looks_empty(body):
            return body
        # An empty 200/204, or an empty list, with a token may be a swallowed 401: NBIA's
        # DAOs answer "nothing visible" when authorization fails (protocol §4.3, §10.4;
        # GeneralSeriesDAOImpl, getCollectionOrSeriesForDOI).
        if self.token_accepted(token):
            return body
        log.debug("%s: empty answer with a rejected token; renewing and asking again", route.name)
        token = self.tokens.renew(token)
        with self._send_once(route, token, params, data, idempotent) as retry:
            raise_for_status(retry, route.name)
            body = retry.content
        if looks_empty(body) and not self.token_accepted(token):
            raise ApiUnauthorized(
                f"{route.name}: the server keeps rejecting fresh tokens for "
                f"{self.tokens.username!r}; its login service may be failing, try again later",
                status=401,
                endpoint=route.name,
            )
        return body

    def open_stream(self, route: Route, *, params: FormData | None = None) -> requests.Response:
        """Start a streamed GET; the caller must close the returned response.

        Raises:
            ApiBadRequest, ApiUnauthorized, ApiServerError, ApiResponseError: error statuses.
            ApiUnavailable: the server could not be reached.
        """
        token = self._token_for(route)
        response = self._send_once(route, token, params, None, True, stream=True)
        if response.status_code == 401 and token is not None:
            response.close()
            token = self.tokens.renew(token)
            response = self._send_once(route, token, params, None, True, stream=True)
        if response.status_code >= 400:
            with response:
                raise_for_status(response, route.name)
        return response

    def token_accepted(self, token: str) -> bool:
        """Ask an endpoint that answers 401 to a bad token whether ``token`` is good.

        Raises:
            ApiResponseError: the probe failed for another reason.
            ApiUnavailable: the server could not be reached.
        """
        probe = Route(_TOKEN_PROBE, "POST")
        with self._send_once(probe, token, None, _PROBE_FORM, True) as response:
            if response.status_code == 401:
                return False
            raise_for_status(response, probe.name)
            return True

    def _token_good(self, token: str, failure: ApiError) -> bool:
        """:meth:`token_accepted`, but a probe that fails too leaves ``failure`` to report."""
        try:
            return self.token_accepted(token)
        except ApiError:
            log.debug("token probe failed as well; reporting %s", failure)
            return True

    def _token_for(self, route: Route) -> str | None:
        rule = route.token_rule
        if rule is Auth.NEVER or (rule is Auth.WITH_CREDENTIALS and not self.has_credentials):
            return None
        return self.tokens.access_token()

    def _send_authorized(
        self,
        route: Route,
        token: str | None,
        params: FormData | None,
        data: FormData | None,
        idempotent: bool,
    ) -> _Answer:
        with self._send_once(route, token, params, data, idempotent) as response:
            if response.status_code == 401 and token is not None:
                token = self.tokens.renew(token)  # once per rejection (protocol §4.3)
            else:
                raise_for_status(response, route.name)
                return _Answer(response.content, token)
        with self._send_once(route, token, params, data, idempotent) as response:
            raise_for_status(response, route.name)
            return _Answer(response.content, token)

    def _send_once(
        self,
        route: Route,
        token: str | None,
        params: FormData | None,
        data: FormData | None,
        idempotent: bool,
        *,
        stream: bool = False,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.transport.send(
            route.method,
            self.urls.endpoint(route.path),
            endpoint=route.name,
            params=params,
            data=data,
            headers=headers,
            stream=stream,
            idempotent=idempotent,
        )


@dataclass(frozen=True, slots=True)
class _Answer:
    body: bytes
    token: str | None


class EndpointGroup:
    """Shared plumbing of the client's endpoint groups (mixed into ``NbiaClient``)."""

    _caller: Caller
    _family: ApiFamily

    def _versioned(self, name: str, method: str = "GET") -> Route:
        """The route of ``name`` in the client's API family (``v4/…``, ``v2/…``, ``v1/…``)."""
        return Route(f"{self._family}/{name}", method)

    def _v4_or_advanced(self, name: str, method: str = "GET") -> Route:
        """v4's route on the v4 family; elsewhere the unversioned "Advanced" one (token)."""
        return Route(f"v4/{name}" if self._family == "v4" else name, method)

    def _decoded(
        self,
        route: Route,
        decode: Callable[[bytes], T],
        *,
        params: FormData | None = None,
        data: FormData | None = None,
    ) -> T:
        """Fetch and ``decode`` an answer; one that is not of the documented shape is retried.

        A maintenance page or a cut body served with 200 is a transient server fault: it is
        asked again under the retry policy, and reported only when every attempt gave one.

        Raises:
            ApiProtocolError: every attempt's answer had the wrong shape; the message names
                the endpoint, the request, the status and a short, redacted excerpt.
            ApiError: the call failed otherwise.
        """
        transport = self._caller.transport
        attempts = transport.retry.attempts
        for attempt in range(1, attempts + 1):
            body = self._caller.fetch(route, params=params, data=data)
            try:
                return decode(body)
            except ApiProtocolError as exc:
                if attempt == attempts:
                    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
                    raise ApiProtocolError(
                        f"{exc} (asked for {_request_label(params, data)}; the same through "
                        f"{tries}: the archive may be under maintenance, try again later)"
                    ) from exc
                transport.pause_before_retry(route.name, "an answer of the wrong shape", attempt)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _records(
        self,
        route: Route,
        build: Callable[[parse.Row, str], T],
        *,
        params: FormData | None = None,
        data: FormData | None = None,
    ) -> list[T]:
        """A JSON list of records, each built (and so checked) inside the retried decode."""

        def decode(body: bytes) -> list[T]:
            return [build(row, route.name) for row in parse.decode_json_rows(body, route.name)]

        return self._decoded(route, decode, params=params, data=data)

    def _json_rows(
        self, route: Route, *, params: FormData | None = None, data: FormData | None = None
    ) -> list[dict[str, Any]]:
        return self._decoded(
            route, lambda body: parse.decode_json_rows(body, route.name), params=params, data=data
        )


def _request_label(params: FormData | None, data: FormData | None) -> str:
    """What was asked, for a message: ``SeriesInstanceUID=1.2.3``, shortened."""
    fields = {**(params or {}), **(data or {})}
    shown = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else ",".join(value)
        shown.append(f"{name}={text if len(text) <= 80 else text[:80] + '…'}")
    return ", ".join(shown) or "no parameters"


def looks_empty(body: bytes) -> bool:
    """True for every way NBIA says "no rows": an empty body, an empty JSON list, ``null``.

    All three are also what an endpoint answers when it swallowed a rejected token, so none
    of them is believed while a token was sent until the token is proven good.
    """
    stripped = body.strip()
    if stripped in (b"", b"null"):
        return True
    return stripped[:1] == b"[" and stripped[-1:] == b"]" and not stripped[1:-1].strip()


def clean_params(**fields: str | None) -> Mapping[str, str]:
    """Drop unset fields: v4 rejects unknown parameters, and NBIA treats "" as a filter."""
    return {name: value for name, value in fields.items() if value is not None}

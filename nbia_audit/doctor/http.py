"""The doctor's wire: raw, counted, budgeted requests, each one kept for the evidence record.

The conformance check must see what the archive really answers, so it talks HTTP itself and
never through :class:`~nbia_audit.client.NbiaClient`, whose whole job is to smooth NBIA's
quirks over (retries, token renewal, empty-answer probes). Nothing is retried here: a
connection failure ends the run (exit 3), and every answer, however odd, becomes evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode, urlsplit

import requests

from nbia_audit.client.servers import ServerUrls
from nbia_audit.version import __version__

__all__ = ["REQUEST_BUDGET", "Answer", "Exchange", "Prober", "Unreachable"]

REQUEST_BUDGET = 48
"""The most requests one doctor run may send. The rows need at most 40 (10 per-image MD5s, 5
series of the sample patient, credentials given); this is the guard that makes "a few dozen
at most" true whatever an archive answers."""

_TIMEOUTS = (10.0, 120.0)  # connect, read: a small series downloads well within this


class Unreachable(Exception):
    """The archive could not be reached (or the request budget ran out): stop, exit 3."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer as the doctor judges it."""

    status: int
    body: bytes
    content_type: str

    @property
    def text(self) -> str:
        """The body as text (replacement characters for undecodable bytes)."""
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, as sent and received (secrets are removed on writing)."""

    number: int
    method: str
    url: str
    endpoint: str
    query: tuple[tuple[str, str], ...]
    form: tuple[tuple[str, str], ...]
    request_headers: tuple[tuple[str, str], ...]
    status: int
    response_headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)
    error: str = ""


class Prober:
    """Sends the doctor's requests: no retries, a hard budget, and a log of every exchange."""

    def __init__(
        self,
        urls: ServerUrls,
        *,
        session: requests.Session | None = None,
        budget: int = REQUEST_BUDGET,
    ) -> None:
        self.urls = urls
        self.budget = budget
        self.exchanges: list[Exchange] = []
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"nbia-audit/{__version__} doctor"

    @property
    def count(self) -> int:
        """Requests sent so far (those that never got an answer included)."""
        return len(self.exchanges)

    @property
    def remaining(self) -> int:
        """Requests still allowed under the budget."""
        return self.budget - self.count

    def close(self) -> None:
        """Release the connections."""
        self._session.close()

    def get(
        self, path: str, params: Mapping[str, str] | None = None, *, token: str | None = None
    ) -> Answer:
        """GET ``path`` below the services base.

        Raises:
            Unreachable: no answer, or the budget is spent.
        """
        return self.send("GET", self.urls.endpoint(path), path, query=params, token=token)

    def post(
        self, path: str, form: Mapping[str, str], *, token: str | None = None, url: str = ""
    ) -> Answer:
        """POST a well-formed ``application/x-www-form-urlencoded`` form.

        Raises:
            Unreachable: no answer, or the budget is spent.
        """
        target = url or self.urls.endpoint(path)
        return self.send("POST", target, path, form=form, token=token)

    def send(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        query: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Answer:
        """Send one request and keep it in :attr:`exchanges`.

        Raises:
            Unreachable: no answer, or the budget is spent.
        """
        if self.remaining <= 0:
            raise Unreachable(
                f"the doctor's budget of {self.budget} requests is spent; nothing more is sent"
            )
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        query_pairs = tuple((query or {}).items())
        form_pairs = tuple((form or {}).items())
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        asked = Exchange(
            number=self.count + 1,
            method=method,
            url=f"{url}?{urlencode(query_pairs)}" if query_pairs else url,
            endpoint=endpoint,
            query=query_pairs,
            form=form_pairs,
            request_headers=tuple(headers.items()),
            status=0,
            response_headers=(),
            body=b"",
            error="no answer",
        )
        try:
            response = self._session.request(
                method,
                asked.url,
                data=urlencode(form_pairs) if form is not None else None,
                headers=headers,
                timeout=_TIMEOUTS,
                allow_redirects=False,
            )
            body = response.content
        except requests.RequestException as exc:
            self.exchanges.append(asked)  # kept as asked: the record shows what got no answer
            host = urlsplit(url).netloc
            raise Unreachable(
                f"{endpoint}: no answer from {host} ({type(exc).__name__}); check the network "
                "and the server URL"
            ) from None
        answered = replace(
            asked,
            request_headers=tuple(response.request.headers.items()),  # as sent, with defaults
            status=response.status_code,
            response_headers=tuple(response.headers.items()),
            body=body,
            error="",
        )
        self.exchanges.append(answered)
        return Answer(response.status_code, body, response.headers.get("Content-Type", ""))

"""The one exception tree of nbia-audit.

An exception means a check could not be performed; findings (a missing file, a changed
series) are values in a report, never exceptions.

    NbiaAuditError
    ├── SpecError                 the dataset spec is invalid (exit 2)
    ├── ApiError                  talking to the archive failed (exit 3)
    │   ├── ApiUnavailable        connection refused/reset, timeout, retries exhausted
    │   ├── AuthError             token request, refresh or logout failed
    │   └── ApiResponseError      the server answered with an error status
    │       ├── ApiBadRequest     400: missing/unknown parameter, inaccessible series
    │       ├── ApiUnauthorized   401: token rejected even after a refresh
    │       └── ApiServerError    5xx after retries
    │   └── ApiProtocolError      a 200 body that does not parse as the endpoint's format
    ├── StoreError                the lock or state database cannot be used (exit 3)
    │   ├── LockNotFound
    │   └── LockFormatTooNew
    ├── DownloadError             a download could not be completed (exit 3)
    └── ShardsIncomplete          a merge found shards missing or foreign (exit 3)

Exit codes are mapped in one place, the CLI. Every message says what happened and, where
possible, what to do next. Messages never contain credentials or tokens.
"""

from __future__ import annotations


class NbiaAuditError(Exception):
    """Base class for every error nbia-audit raises on purpose."""


class SpecError(NbiaAuditError):
    """The dataset spec is invalid; the message names the file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        # Bounded whatever a caller quoted: spec values are untrusted and may be huge.
        text += self.message if len(self.message) <= 500 else self.message[:500] + "..."
        if self.hint:
            text += f" ({self.hint})"
        return text


class ApiError(NbiaAuditError):
    """Talking to the NBIA archive failed."""


class ApiUnavailable(ApiError):
    """The archive could not be reached, or kept failing after every retry."""


class AuthError(ApiError):
    """A token could not be obtained, refreshed or revoked."""


class ApiResponseError(ApiError):
    """The server answered an error status; ``server_message`` is its plain-text body."""

    def __init__(
        self, message: str, *, status: int, endpoint: str, server_message: str = ""
    ) -> None:
        self.status = status
        self.endpoint = endpoint
        self.server_message = server_message
        super().__init__(message)


class ApiBadRequest(ApiResponseError):
    """HTTP 400: NBIA's answer to a missing or unknown parameter or an inaccessible series."""


class ApiUnauthorized(ApiResponseError):
    """HTTP 401: the bearer token was rejected even after a refresh."""


class ApiServerError(ApiResponseError):
    """HTTP 5xx that persisted through every retry."""


class ApiProtocolError(ApiError):
    """A successful response whose body does not have the endpoint's documented format."""


class StoreError(NbiaAuditError):
    """The lock database or the local state database cannot be used."""


class LockNotFound(StoreError):
    """The lock file or its database does not exist."""


class LockFormatTooNew(StoreError):
    """The lock was written by a newer nbia-audit; upgrade to read it."""


class DownloadError(NbiaAuditError):
    """A download could not be completed or placed."""


class ShardsIncomplete(NbiaAuditError):
    """A merge of shards cannot stand for one run: some are missing, or from another run.

    ``missing`` and ``foreign`` name the shards (``K/N``) and files; the merge never reads
    clean without all of them.
    """

    def __init__(
        self, message: str, *, missing: tuple[str, ...] = (), foreign: tuple[str, ...] = ()
    ) -> None:
        self.missing = missing
        self.foreign = foreign
        super().__init__(message)

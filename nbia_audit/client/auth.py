"""Credentials and the thread-safe OAuth token state shared by every worker thread.

NBIA's token endpoint (``<root>/oauth/token``) relays a Keycloak password grant; any password
works for ``nbia_guest`` (protocol §4.1). Tokens expire (two hours documented; always read
``expires_in``), so :class:`TokenManager` refreshes shortly before expiry, refreshes once more
when a request is answered 401, and logs in again when the refresh token itself is dead.

Secrets (passwords, access and refresh tokens) never enter an exception message, a log record
or a ``repr``; server error text is scrubbed of them before it is shown.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from nbia_audit.client import redact
from nbia_audit.client.records import TokenInfo
from nbia_audit.client.servers import ServerUrls
from nbia_audit.client.transport import Transport, server_message
from nbia_audit.errors import ApiUnavailable, AuthError

__all__ = ["Credentials", "TokenManager", "credentials_from_env"]

log = logging.getLogger(__name__)

_DEFAULT_CLIENT_ID = "nbia"
"""Keycloak client the server substitutes on password grants (protocol §4.1)."""

_DEFAULT_LIFETIME = 300.0
"""Assumed token lifetime when the server omits ``expires_in``: short, so we refresh early."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password for NBIA; the password never appears in ``repr``."""

    GUEST_USERNAME: ClassVar[str] = "nbia_guest"

    username: str
    password: str = field(repr=False)

    @classmethod
    def guest(cls) -> Credentials:
        """The public guest account; NBIA accepts any password for it (protocol §4.1)."""
        return cls(cls.GUEST_USERNAME, "")

    @property
    def is_guest(self) -> bool:
        """True for the public guest account."""
        return self.username == self.GUEST_USERNAME


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Build credentials from ``NBIA_USER`` and ``NBIA_PASSWORD``, or return None.

    Both must be set (the password may be empty only for ``nbia_guest``); when only the user is
    set, None is returned so the caller (the CLI) can prompt for the password.
    """
    env = os.environ if environ is None else environ
    username = env.get("NBIA_USER", "").strip()
    if not username:
        return None
    password = env.get("NBIA_PASSWORD")
    if password is None:
        if username == Credentials.GUEST_USERNAME:
            return Credentials.guest()
        return None
    return Credentials(username, password)


class TokenManager:
    """Holds one account's token pair and renews it; safe to share between threads.

    One lock guards the token state and is held across the renewing HTTP call, so when many
    workers find the token stale at once exactly one of them renews it and the others reuse
    the result.
    """

    def __init__(
        self,
        transport: Transport,
        urls: ServerUrls,
        credentials: Credentials,
        *,
        client_id: str = _DEFAULT_CLIENT_ID,
        leeway: float = 60.0,
    ) -> None:
        self._transport = transport
        self._urls = urls
        self._credentials = credentials
        self._client_id = client_id
        self._leeway = leeway
        self._lock = threading.Lock()
        self._token: TokenInfo | None = None
        redact.remember_login(credentials.username, credentials.password)

    def __repr__(self) -> str:
        return f"TokenManager(username={self._credentials.username!r})"

    @property
    def username(self) -> str:
        """The account this manager logs in as."""
        return self._credentials.username

    @property
    def expires_at(self) -> float | None:
        """When the current access token expires (client clock), or None when logged out."""
        with self._lock:
            return self._token.expires_at if self._token else None

    def access_token(self) -> str:
        """Return an access token that is not about to expire, logging in if needed.

        Raises:
            AuthError: the login or refresh was refused.
            ApiUnavailable: the token endpoint could not be reached.
            ApiServerError: the token endpoint kept failing with 5xx.
        """
        with self._lock:
            token = self._token
            if token is None:
                token = self._login()
            elif self._stale(token):
                token = self._refresh_or_login(token)
            return token.access_token

    def renew(self, rejected: str) -> str:
        """Replace an access token the server rejected; return the new one.

        If another thread already replaced ``rejected``, its replacement is returned without
        another round-trip (refresh once per rejection, not once per thread).

        Raises:
            AuthError: the refresh and the fresh login were both refused.
            ApiUnavailable: the token endpoint could not be reached.
        """
        with self._lock:
            token = self._token
            if token is not None and token.access_token != rejected:
                return token.access_token
            token = self._login() if token is None else self._refresh_or_login(token)
            return token.access_token

    def logout(self) -> None:
        """End the server-side session (``POST <root>/logout``, protocol §4.2).

        The local token is forgotten first, whatever the server answers.

        Raises:
            AuthError: the server refused the logout.
            ApiUnavailable: the logout endpoint could not be reached.
        """
        with self._lock:
            token, self._token = self._token, None
        if token is None:
            return
        response = self._transport.send(
            "POST",
            self._urls.logout,
            endpoint="logout",
            headers={"Authorization": f"Bearer {token.access_token}"},
        )
        with response:
            if response.status_code >= 400:
                detail = self._scrub(server_message(response), token)
                raise AuthError(
                    f"logout of {self.username!r} failed (HTTP {response.status_code})"
                    f"{': ' + detail if detail else ''}; the session ends when its token expires"
                )

    # -- internals (called with the lock held) -----------------------------------------------

    def _stale(self, token: TokenInfo) -> bool:
        # Renew `leeway` seconds early, but never earlier than half-way through the lifetime,
        # so a short-lived token (a test's, or a strict realm's) is not stale at birth.
        margin = min(self._leeway, (token.expires_at - token.issued_at) / 2)
        return self._transport.clock() >= token.expires_at - margin

    def _login(self) -> TokenInfo:
        creds = self._credentials
        log.debug("requesting an NBIA token for %r", creds.username)
        form = {
            "username": creds.username,
            "password": creds.password,
            "client_id": self._client_id,
            "grant_type": "password",
        }
        response = self._transport.send("POST", self._urls.token, endpoint="oauth/token", data=form)
        with response:
            if response.status_code != 200:
                detail = self._scrub(_oauth_error(response), None)
                raise AuthError(
                    f"could not log in to NBIA as {creds.username!r} "
                    f"(HTTP {response.status_code}){': ' + detail if detail else ''}; "
                    "check the user name and password (NBIA_USER / NBIA_PASSWORD)"
                )
            self._token = self._parse(response, fallback_client=self._client_id)
        return self._token

    def _refresh_or_login(self, token: TokenInfo) -> TokenInfo:
        now = self._transport.clock()
        dead = token.refresh_expires_at is not None and now >= token.refresh_expires_at
        if token.refresh_token is None or dead:
            return self._login()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
            # Refreshes are forwarded as given, so name the client the token was issued to.
            "client_id": token.client_id,
        }
        # Not idempotent: with refresh-token rotation a retried refresh would present a spent
        # token. A failed refresh falls back to a fresh login instead.
        try:
            response = self._transport.send(
                "POST", self._urls.token, endpoint="oauth/token", data=form, idempotent=False
            )
        except ApiUnavailable:
            log.debug("token refresh failed in transit; logging in again")
            self._token = None
            return self._login()
        with response:
            if response.status_code != 200:
                log.debug("token refresh refused (HTTP %d); logging in again", response.status_code)
                self._token = None
                return self._login()
            self._token = self._parse(response, fallback_client=token.client_id)
        return self._token

    def _parse(self, response: requests.Response, *, fallback_client: str) -> TokenInfo:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AuthError("the NBIA token endpoint answered without an access token")
        access: str = body["access_token"]
        refresh = body.get("refresh_token")
        redact.remember(access, refresh if isinstance(refresh, str) else None)
        now = self._transport.clock()
        lifetime = _seconds(body.get("expires_in")) or _DEFAULT_LIFETIME
        refresh_life = _seconds(body.get("refresh_expires_in"))  # 0 or absent: unbounded
        return TokenInfo(
            access_token=access,
            issued_at=now,
            expires_at=now + lifetime,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            refresh_expires_at=now + refresh_life if refresh_life else None,
            client_id=_jwt_claim(access, "azp") or fallback_client,
        )

    def _scrub(self, text: str, token: TokenInfo | None) -> str:
        creds = self._credentials
        extra: list[str | None] = [creds.password, f"{creds.username}:{creds.password}"]
        if token is not None:
            extra += [token.access_token, token.refresh_token]
        return redact.excerpt(text, 500, extra)


def _oauth_error(response: requests.Response) -> str:
    """Return Keycloak's ``error: error_description`` or, failing that, the body text."""
    try:
        body: Any = response.json()
    except ValueError:
        return server_message(response)
    if isinstance(body, dict) and body.get("error"):
        described = body.get("error_description")
        return f"{body['error']}: {described}" if described else str(body["error"])
    return server_message(response)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _jwt_claim(token: str, claim: str) -> str | None:
    """Read one string claim from a JWT payload without verifying it (only to route refreshes)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims: Any = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    value = claims.get(claim) if isinstance(claims, dict) else None
    return value if isinstance(value, str) and value else None

"""Keycloak-shaped tokens with real expiry (protocol §4).

``/oauth/token`` relays Keycloak: a password grant (``nbia_guest`` with any password, or a
configured user) or a refresh grant yields the usual Keycloak JSON. Tokens are opaque random
strings; what matters to clients is that they expire after ``expires_in`` seconds, that a refresh
token works until ``refresh_expires_in``, and that logout revokes both.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

GUEST_USER = "nbia_guest"
# keycloak.client.id in deploy/lib/nbia.properties: the client every NBIA token is issued to.
KEYCLOAK_CLIENT_ID = "nbia"


@dataclass(frozen=True, slots=True)
class Session:
    """One login: its user and the two tokens with their expiry times (clock seconds)."""

    user: str
    access_token: str
    refresh_token: str
    access_expires: float
    refresh_expires: float
    session_state: str


class TokenError(Exception):
    """A token request Keycloak would refuse; ``error`` is the OAuth error code."""

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class TokenStore:
    """Issues, refreshes, validates and revokes tokens against an injectable clock."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        access_ttl: float,
        refresh_ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self.users = dict(users)
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._clock = clock
        self._by_access: dict[str, Session] = {}
        self._by_refresh: dict[str, Session] = {}
        self._lock = threading.Lock()

    def password_grant(self, username: str | None, password: str | None) -> Session:
        """Log a user in; the guest account accepts any password, including an empty one.

        Raises:
            TokenError: unknown user or wrong password (Keycloak's ``invalid_grant``).
        """
        if username != GUEST_USER and (
            username is None or self.users.get(username) != (password or "")
        ):
            raise TokenError("invalid_grant", "Invalid user credentials")
        return self._issue(username or GUEST_USER)

    def refresh_grant(self, refresh_token: str | None, client_id: str | None = None) -> Session:
        """Exchange a live refresh token for new tokens (the old pair is retired).

        NBIA forwards the request's ``client_id`` to Keycloak unchanged, and Keycloak only
        refreshes a token for the client it was issued to (the server's ``keycloak.client.id``).

        Raises:
            TokenError: missing or foreign client id; unknown, revoked or expired refresh token.
        """
        if client_id != KEYCLOAK_CLIENT_ID:
            raise TokenError("invalid_client", "Invalid client or Invalid client credentials")
        with self._lock:
            session = self._by_refresh.get(refresh_token or "")
            if session is None or self._clock() >= session.refresh_expires:
                raise TokenError("invalid_grant", "Token is not active", 400)
            self._forget(session)
        return self._issue(session.user)

    def user_for(self, access_token: str) -> str | None:
        """The user of a live access token (Keycloak userinfo), or None if invalid/expired."""
        with self._lock:
            session = self._by_access.get(access_token)
        if session is None or self._clock() >= session.access_expires:
            return None
        return session.user

    def revoke(self, access_token: str) -> bool:
        """Logout: forget the session of this access token; False if it was not live."""
        with self._lock:
            session = self._by_access.get(access_token)
            if session is None:
                return False
            self._forget(session)
            return True

    def expire_all(self) -> None:
        """Make every issued access token expire now (refresh tokens stay usable)."""
        now = self._clock()
        with self._lock:
            for token, session in list(self._by_access.items()):
                expired = Session(
                    session.user,
                    session.access_token,
                    session.refresh_token,
                    now,
                    session.refresh_expires,
                    session.session_state,
                )
                self._by_access[token] = expired
                self._by_refresh[session.refresh_token] = expired

    def _issue(self, user: str) -> Session:
        now = self._clock()
        session = Session(
            user=user,
            access_token="emu." + secrets.token_urlsafe(32),
            refresh_token="emu-r." + secrets.token_urlsafe(32),
            access_expires=now + self.access_ttl,
            refresh_expires=now + self.refresh_ttl,
            session_state=secrets.token_hex(16),
        )
        with self._lock:
            self._by_access[session.access_token] = session
            self._by_refresh[session.refresh_token] = session
        return session

    def _forget(self, session: Session) -> None:
        self._by_access.pop(session.access_token, None)
        self._by_refresh.pop(session.refresh_token, None)

    def token_json(self, session: Session) -> dict[str, object]:
        """The Keycloak token response body, key order as Keycloak sends it."""
        return {
            "access_token": session.access_token,
            "expires_in": int(self.access_ttl),
            "refresh_expires_in": int(self.refresh_ttl),
            "refresh_token": session.refresh_token,
            "token_type": "Bearer",
            "id_token": "emu-id." + session.session_state,
            "not-before-policy": 0,
            "session_state": session.session_state,
            "scope": "openid profile email",
        }

"""The token and logout endpoints (protocol §4.1, §4.2)."""

from __future__ import annotations

from nbia_audit.emulator.auth import TokenError
from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.routes import Request, endpoint
from nbia_audit.emulator.wire import Response, json_body, server_error


def _bearer(req: Request) -> str | None:
    header = req.headers.get("authorization")
    if header is None or header.lower() == "bearer undefined":
        return None
    return header[7:] if header.lower().startswith("bearer ") else header


@endpoint("oauth/token", ("auth",), method="POST", auth="public", param_kind="form")
def token(ctx: Backend, req: Request) -> Response:
    """Password or refresh grant; the body and status are Keycloak's (relayed by NBIA)."""
    grant = req.get("grant_type")
    try:
        # KeycloakGetToken compares with equalsIgnoreCase; a missing grant_type is an NPE.
        if grant is not None and grant.lower() == "password":
            # The client_id sent is replaced by the server's own keycloak.client.id.
            session = ctx.tokens.password_grant(req.get("username"), req.get("password"))
        elif grant is not None and grant.lower() == "refresh_token":
            # client_id (and client_secret) are forwarded to Keycloak exactly as sent.
            session = ctx.tokens.refresh_grant(req.get("refresh_token"), req.get("client_id"))
        else:
            # Any other grant builds a Response with status 0: a 500.
            return server_error()
    except TokenError as exc:
        body = json_body({"error": exc.error, "error_description": exc.description})
        return Response(exc.status, body, "application/json")
    return Response(200, json_body(ctx.tokens.token_json(session)), "application/json")


@endpoint("logout", ("auth",), method="POST", auth="public")
def logout(ctx: Backend, req: Request) -> Response:
    """Revoke the bearer token's session; Keycloak answers 204 (401 for a dead token)."""
    access = _bearer(req)
    if access is None:
        return server_error()  # status 0 for a missing/undefined token: a 500
    return Response(204 if ctx.tokens.revoke(access) else 401)

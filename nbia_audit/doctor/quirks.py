"""The doctor's rows about NBIA's quirks: empty answers, rejected tokens, the token flow.

nbia-audit tells "nothing there" from "not allowed to see it" by these rules (protocol §4.3,
§8; issue 12): an anonymous v4 call that finds nothing answers 200 with no rows; a rejected
token is a 401 on ``getMD5Hierarchy`` (the probe the client asks before it believes an empty
answer) but is swallowed into "no rows" by the list endpoints; an unknown series cannot be
downloaded (400). The token rows run only with credentials (``NBIA_USER``/``NBIA_PASSWORD``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nbia_audit.client.auth import Credentials
from nbia_audit.doctor.checks import UNKNOWN_UID, Check, Verdict, describe, json_rows
from nbia_audit.doctor.http import Answer, Prober

__all__ = ["BOGUS_TOKEN", "Secrets", "empty_answer_checks", "token_checks"]

BOGUS_TOKEN = "nbia-audit-doctor-not-a-token"
"""Sent where a rejected token is the point: it can open nothing on any server."""

_CLIENT_ID = "nbia"  # the client the server substitutes on a password grant (protocol §4.1)


@dataclass(slots=True)
class Secrets:
    """Every secret the run handled, so the evidence record can be scrubbed of them."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: object) -> None:
        """Remember the non-empty strings among ``values``."""
        self.values.update(v for v in values if isinstance(v, str) and v)


def _row(name: str, title: str, expected: str, answered: str, ok: bool) -> Check:
    return Check(name, title, expected, answered, Verdict.PASS if ok else Verdict.FAIL)


def _no_rows(answer: Answer) -> str | None:
    """Say how a 200 with no rows came (an empty body or ``[]``); None for anything else."""
    if answer.status != 200:
        return None
    if not answer.body.strip():
        return "no rows (empty body)"
    return "no rows ([])" if json_rows(answer) == [] else None


def empty_answer_checks(prober: Prober, series_uid: str) -> list[Check]:
    """Unknown objects and rejected tokens, anonymous and read-only."""
    rows: list[Check] = []
    title, expected = "v4/getSeries for an unknown series", "200 with no rows (empty body or [])"
    answer = prober.get("v4/getSeries", {"SeriesInstanceUID": UNKNOWN_UID})
    form = _no_rows(answer)
    rows.append(_row("empty-list", title, expected, describe(answer, form or ""), form is not None))

    title, expected = "v4/getMD5Hierarchy for an unknown series", "200 with an empty body"
    answer = prober.post("v4/getMD5Hierarchy", {"SeriesInstanceUID": UNKNOWN_UID})
    ok = answer.status == 200 and not answer.body.strip()
    rows.append(_row("empty-hash", title, expected, describe(answer), ok))

    title, expected = "v4/getMD5HashForImage for an unknown image", "200 with an empty body"
    answer = prober.get("v4/getMD5HashForImage", {"SOPInstanceUID": UNKNOWN_UID})
    ok = answer.status == 200 and not answer.body.strip()
    rows.append(_row("empty-image-md5", title, expected, describe(answer), ok))

    title = "v4/getImageWithMD5Hash for an unknown series"
    expected = "400 (never an empty ZIP that would read as 'no images')"
    answer = prober.get("v4/getImageWithMD5Hash", {"SeriesInstanceUID": UNKNOWN_UID})
    rows.append(_row("unknown-download", title, expected, describe(answer), answer.status == 400))

    title = "rejected token on v4/getMD5Hierarchy (the client's probe)"
    expected = "401: the probe tells a bad token from an empty answer"
    form_body = {"SeriesInstanceUID": series_uid}
    answer = prober.post("v4/getMD5Hierarchy", form_body, token=BOGUS_TOKEN)
    rows.append(
        _row("rejected-token-probe", title, expected, describe(answer), answer.status == 401)
    )

    title = "rejected token on v4/getSeries"
    expected = "200 with no rows (swallowed) or 401; never rows, never an error"
    answer = prober.get("v4/getSeries", {"SeriesInstanceUID": series_uid}, token=BOGUS_TOKEN)
    form = _no_rows(answer)
    ok = form is not None or answer.status == 401
    rows.append(_row("rejected-token-list", title, expected, describe(answer, form or ""), ok))
    return rows


TOKEN_ROWS = (
    ("token-password-grant", "token: password grant"),
    ("token-accepted", "token accepted by v4/getMD5Hierarchy"),
    ("token-v2-family", "token family v2: v2/getSeries"),
    ("token-refresh", "token: refresh grant"),
    ("logout", "logout"),
)


def token_checks(
    prober: Prober,
    credentials: Credentials | None,
    series_uid: str,
    archive_hash: str | None,
    secrets: Secrets,
) -> list[Check]:
    """The token flow with the user's credentials; skipped rows without them."""
    expected = {
        "token-password-grant": "200 JSON with access_token, refresh_token, numeric expires_in",
        "token-accepted": "200, the same series hash as without a token",
        "token-v2-family": "200, JSON array with the series' row",
        "token-refresh": "200 JSON with a new access_token (client_id forwarded)",
        "logout": "2xx for the live token",
    }
    if credentials is None:
        why = "not asked: no credentials (set NBIA_USER and NBIA_PASSWORD to check tokens)"
        return [Check(n, t, expected[n], why, Verdict.SKIP) for n, t in TOKEN_ROWS]
    secrets.add(credentials.password)
    rows: list[Check] = []
    form = {
        "username": credentials.username,
        "password": credentials.password,
        "client_id": _CLIENT_ID,
        "grant_type": "password",
    }
    answer = prober.post("oauth/token", form, url=prober.urls.token)
    session = _token_json(answer, secrets)
    name, title = TOKEN_ROWS[0]
    note = "token issued" if session else "no usable token"
    rows.append(_row(name, title, expected[name], describe(answer, note), session is not None))
    if session is None:
        return rows + [
            Check(n, t, expected[n], "not asked: no token", Verdict.SKIP) for n, t in TOKEN_ROWS[1:]
        ]
    access, refresh = session

    answer = prober.post("v4/getMD5Hierarchy", {"SeriesInstanceUID": series_uid}, token=access)
    name, title = TOKEN_ROWS[1]
    ok = answer.status == 200 and archive_hash is not None and answer.text == archive_hash
    rows.append(_row(name, title, expected[name], describe(answer, answer.text[:40]), ok))

    answer = prober.get("v2/getSeries", {"SeriesInstanceUID": series_uid}, token=access)
    name, title = TOKEN_ROWS[2]
    found = [r for r in json_rows(answer) or [] if r.get("SeriesInstanceUID") == series_uid]
    note = f"{len(found)} row(s) for the series"
    rows.append(_row(name, title, expected[name], describe(answer, note), len(found) == 1))

    name, title = TOKEN_ROWS[3]
    refreshed = None
    if refresh is None:
        rows.append(Check(name, title, expected[name], "no refresh_token issued", Verdict.FAIL))
    else:
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": _CLIENT_ID}
        answer = prober.post("oauth/token", form, url=prober.urls.token)
        refreshed = _token_json(answer, secrets)
        note = "token renewed" if refreshed else "no usable token"
        rows.append(_row(name, title, expected[name], describe(answer, note), bool(refreshed)))
    live = refreshed[0] if refreshed else access

    answer = prober.send("POST", prober.urls.logout, "logout", token=live)
    name, title = TOKEN_ROWS[4]
    rows.append(_row(name, title, expected[name], describe(answer), 200 <= answer.status < 300))
    return rows


def _token_json(answer: Answer, secrets: Secrets) -> tuple[str, str | None] | None:
    """``(access_token, refresh_token)`` from a Keycloak answer; every token is remembered."""
    try:
        body = json.loads(answer.body) if answer.status == 200 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return None
    secrets.add(body.get("access_token"), body.get("refresh_token"), body.get("id_token"))
    access, refresh = body.get("access_token"), body.get("refresh_token")
    lifetime = body.get("expires_in")
    if not isinstance(access, str) or not access or not isinstance(lifetime, int | float):
        return None
    return access, refresh if isinstance(refresh, str) and refresh else None

"""A small client for the control API of an emulator running in another process."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from nbia_audit.emulator.faults import Fault


class ControlError(Exception):
    """The control API refused a request; the message is its error text."""


class EmulatorUnreachable(Exception):
    """No emulator answered at the URL (nothing listening, or not an emulator)."""


class RemoteEmulator:
    """Mutate and fault an emulator started elsewhere (``nbia-audit emulator serve``).

    ``url`` may be any URL of the emulator, e.g. the base URL that ``serve`` prints.
    """

    def __init__(self, url: str, session: requests.Session | None = None, timeout: float = 10.0):
        parts = urlsplit(url)
        self.url = url
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._session = session or requests.Session()
        self._timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.origin}/_emulator/{path}"
        try:
            response = self._session.request(method, url, json=body or {}, timeout=self._timeout)
        except requests.ConnectionError:
            raise EmulatorUnreachable(f"nothing answers at {self.origin}") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema):  # fmt: skip
            raise ControlError(
                f"{self.url[:200]!r} is not an emulator URL (give the http://127.0.0.1:PORT/..."
                " line `nbia-audit emulator serve` printed)"
            ) from None
        except requests.RequestException as exc:
            raise EmulatorUnreachable(f"{self.origin}: {type(exc).__name__}") from None
        try:
            data = response.json()
        except ValueError:  # a body that is not JSON (requests' JSONDecodeError): another server
            raise EmulatorUnreachable(
                f"{self.origin} is not an nbia-audit emulator (HTTP {response.status_code},"
                " not JSON)"
            ) from None
        if response.status_code != 200:
            raise ControlError(str(data.get("error", data)))
        return data

    def state(self) -> dict[str, Any]:
        """Base URL, counts, active faults and request count."""
        return dict(self._call("GET", "state"))

    def series(self) -> list[dict[str, Any]]:
        """Every series with its images (SOP UID and stored MD5)."""
        return list(self._call("GET", "series"))

    def mutate(self, action: str, **arguments: Any) -> Any:
        """Run an ``Emulator`` mutation by name; returns its result."""
        return self._call("POST", "mutate", {"action": action, **arguments})["result"]

    def add_fault(self, fault: Fault) -> list[dict[str, Any]]:
        """Activate a fault; returns the active rules."""
        return list(self._call("POST", "faults", fault.to_json())["faults"])

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._call("DELETE", "faults")

    def run_nightly_job(self) -> dict[str, str]:
        """Run the collection-hash job; returns the changed collections."""
        return dict(self._call("POST", "nightly")["changed"])

    def expire_tokens(self) -> None:
        """Expire every access token."""
        self._call("POST", "expire-tokens")

    def requests(self, clear: bool = False) -> list[dict[str, Any]]:
        """The request log (and clear it if asked)."""
        return list(self._call("DELETE" if clear else "GET", "requests")["requests"])

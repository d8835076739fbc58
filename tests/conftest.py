"""Shared fixtures: a running NBIA emulator over a small, deterministic corpus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from nbia_audit.emulator import Emulator
from tests.support.corpus import SMALL_SPEC, USERS

# Hypothesis' per-example deadline measures wall time, which a loaded CI machine stretches at
# random: a deadline there turns green code red. No deadline anywhere; failures print the blob
# that reproduces them, and the search stays random (derandomize would explore less).
settings.register_profile("nbia", deadline=None, derandomize=False, print_blob=True)
settings.load_profile("nbia")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator per test (mutations and faults never leak between tests).

    Named user ``alice`` (password ``secret``) exists; ``nbia_guest`` takes any password.
    """
    with Emulator.from_spec(SMALL_SPEC, users=USERS) as emu:
        yield emu


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A fresh emulator per test over the corpus the test module names in ``SPEC``.

    (Folders whose tests share one emulator per module, or one corpus, define their own.)
    """
    with Emulator.from_spec(request.module.SPEC) as running:
        yield running


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """Fail any test that opens a network connection beyond loopback (the real archive is
    never contacted in tests)."""
    import ipaddress
    import socket

    original = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = str(address[0])
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"a test tried to reach {host}: tests stay on loopback")
        return original(self, address)  # type: ignore[arg-type]

    socket.socket.connect = guarded  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]

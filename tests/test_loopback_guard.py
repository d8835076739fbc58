"""The session-wide guard keeps every test on loopback."""

from __future__ import annotations

import socket

import pytest


def test_connecting_beyond_loopback_fails_the_test() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="stay on loopback"):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed anyway


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())

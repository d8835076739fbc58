"""Fixtures of the emulator tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A plain HTTP session, as a third-party client would hold one."""
    with requests.Session() as session:
        yield session

"""Sizes in messages and reports: decimal units, as NBIA's own tools print them."""

from __future__ import annotations

import pytest

from nbia_audit.units import human_bytes


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_234_567, "1.2 MB"),
        (999_949_999, "999.9 MB"),
        (10**9, "1.0 GB"),
        (2 * 10**12, "2.0 TB"),
        (5 * 10**15, "5000.0 TB"),  # the largest unit keeps counting
    ],
)
def test_human_bytes(n: int, shown: str) -> None:
    assert human_bytes(n) == shown

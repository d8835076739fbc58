"""Check, before a long fetch starts, that the destination's disk can hold it."""

from __future__ import annotations

import shutil
from pathlib import Path

from nbia_audit.errors import DownloadError
from nbia_audit.units import human_bytes

__all__ = ["MARGIN", "check_free_space", "space_needed"]

MARGIN = 64 * 1000 * 1000
"""Slack for the state database, folders and file-system overhead."""


def space_needed(series_bytes: list[int], workers: int) -> int:
    """Bytes a fetch of series of these sizes needs free.

    The images themselves, plus one series ZIP in flight per worker (a ZIP is about as large
    as its images: DICOM pixel data barely compresses), plus a margin.
    """
    in_flight = sum(sorted(series_bytes, reverse=True)[:workers])
    return sum(series_bytes) + in_flight + MARGIN


def check_free_space(dest: Path, needed: int, series_count: int) -> None:
    """Fail early when ``dest`` has less than ``needed`` bytes free.

    Raises:
        DownloadError: not enough space, or the free space cannot be read.
    """
    try:
        free = shutil.disk_usage(dest).free
    except OSError as exc:
        raise DownloadError(f"{dest}: cannot read the free disk space ({exc})") from exc
    if free < needed:
        raise DownloadError(
            f"{dest}: not enough free disk space: the {series_count} series left to fetch need "
            f"{human_bytes(needed)} (with working space), {human_bytes(free)} is free; free "
            "some space, choose another --dest, or fetch fewer series with --series"
        )

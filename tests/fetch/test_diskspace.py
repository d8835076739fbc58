"""The free-space check before a fetch: the images, one ZIP in flight per worker, a margin;
a short disk is refused with a message that says what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nbia_audit.errors import DownloadError
from nbia_audit.fetch.diskspace import MARGIN, check_free_space, space_needed


def test_each_worker_holds_one_of_the_largest_zips_in_flight() -> None:
    sizes = [10, 500, 30, 400]
    assert space_needed(sizes, workers=1) == 940 + 500 + MARGIN
    assert space_needed(sizes, workers=2) == 940 + 900 + MARGIN


def test_more_workers_than_series_count_each_series_once() -> None:
    assert space_needed([7, 3], workers=8) == 10 + 10 + MARGIN
    assert space_needed([], workers=4) == MARGIN


def test_a_disk_with_room_passes(tmp_path: Path) -> None:
    check_free_space(tmp_path, 1, series_count=1)


def test_a_short_disk_is_refused_with_sizes_and_a_way_out(tmp_path: Path) -> None:
    needed = shutil.disk_usage(tmp_path).free + 10**15
    with pytest.raises(DownloadError) as refused:
        check_free_space(tmp_path, needed, series_count=3)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path}: not enough free disk space: the 3 series")
    assert "--dest" in message and "--series" in message


def test_an_unreadable_destination_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cannot read the free disk space"):
        check_free_space(tmp_path / "missing", 1, series_count=1)

"""Writing a report file: replaced whole (never half-written), readable by CI, links kept,
devices written into rather than replaced, folders refused with a clear error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nbia_audit.errors import StoreError
from nbia_audit.report.file import write_report


def test_the_file_is_replaced_whole_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "report.xml"
    target.write_text("old and much longer than the new text\n", encoding="utf-8")
    before = target.stat().st_ino
    write_report(target, "néw\n")
    assert target.read_bytes() == "néw\n".encode()
    assert target.stat().st_ino != before  # renamed into place, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.xml"]


def test_a_new_report_is_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "new.json"
    write_report(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_link_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    write_report(link, "new")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    # Stands for /dev/stdout and other special files (a test must never risk /dev/null).
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the write cannot block
    try:
        write_report(fifo, "through the pipe")
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_folder_is_refused_with_a_message_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder; give the path of a report file"):
        write_report(tmp_path, "x")


def test_a_missing_folder_is_a_store_error_not_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot write the report"):
        write_report(tmp_path / "no" / "such" / "r.md", "x")

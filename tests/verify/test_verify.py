"""verify on a copy downloaded from the emulator, then tampered in every way the issue names.

The copy is made with the real client (``getImageWithMD5Hash`` over loopback), laid out as
``fetch`` lays it out. Each test clones it, runs a first full pass (as fetch would have
recorded the files), tampers, and checks that every level reports exactly the tampering.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nbia_audit.digests import xxh3_file
from nbia_audit.emulator import CorpusSpec
from nbia_audit.report.render import render_json
from nbia_audit.store.localstate import LocalState, stat_key
from nbia_audit.verify.run import verify_copy
from tests.support.verify import (
    clone,
    flip_bit_keep_mtime,
    foreign_dicom,
    image_files,
    kinds,
    rel,
    sop_of,
    truncate_half,
)

SPEC = CorpusSpec(seed=7, collections=2, patients=2, studies=1, series=2, images=3)


@pytest.fixture
def copy(pristine: Path, lock: Path, tmp_path: Path) -> Path:
    """A fresh clone of the downloaded copy, after a first full pass recorded its files."""
    root = clone(pristine, tmp_path / "copy")
    first = verify_copy(lock, root)
    assert first.clean, first.findings
    return root


def test_a_real_download_verifies_clean_at_every_level(copy: Path, lock: Path) -> None:
    full = verify_copy(lock, copy, level="full")
    assert full.clean and full.facts["hashed_md5"] == 24 and full.facts["files"] == 24
    assert all(s.status == "ok" and "matches the lock" in s.detail for s in full.series)
    quick = verify_copy(lock, copy, level="quick")
    assert quick.clean and quick.facts["proven_xxh3"] == 24 and quick.facts["hashed_md5"] == 0
    stat = verify_copy(lock, copy, level="stat")
    assert stat.clean and stat.facts["unchanged_stat"] == 24 and stat.facts["bytes_read"] == 0
    # stat never calls a file verified: only "unchanged since it was verified on <date>".
    for status in stat.series:
        assert "unchanged since verified by content on" in status.detail
        assert "proven" not in status.detail
    assert "not re-read" in str(stat.facts["proof"])


def tamper_every_way(root: Path) -> set[tuple[str, str, str]]:
    """Apply each tampering of the issue's list to a different image; return the findings
    a correct verify must report: exactly these and nothing else."""
    files = list(image_files(root))
    flipped, truncated, deleted, renamed, copied, blocked = (
        files[i] for i in (0, 4, 8, 12, 16, 20)
    )
    expected = set()
    flip_bit_keep_mtime(flipped)
    expected.add(("modified", sop_of(flipped), rel(root, flipped)))
    truncate_half(truncated)  # cut inside the pixel data: the header still names the image
    expected.add(("unreadable", sop_of(truncated), rel(root, truncated)))
    expected.add(("missing", sop_of(deleted), ""))
    deleted.unlink()
    renamed.rename(renamed.parent.parent / "renamed-by-hand.dcm")  # same bytes: no finding
    second = root / "elsewhere" / "copy.dcm"
    second.parent.mkdir()
    shutil.copy2(copied, second)
    paths = "|".join(sorted([rel(root, copied), rel(root, second)]))
    expected.add(("duplicate", sop_of(copied), paths))
    foreign = files[1].parent / "CT_small.dcm"
    foreign.write_bytes(foreign_dicom())
    expected.add(("unexpected", sop_of(foreign), rel(root, foreign)))
    (root / "notes.txt").write_text("my notes\n")  # junk with a non-DICOM name
    expected.add(("unexpected", "", "notes.txt"))
    (root / "scan.dcm").write_bytes(b"\0" * 200)  # junk where DICOM is expected
    expected.add(("unreadable", "", "scan.dcm"))
    # Unreadable even for root: the image's file replaced by a FIFO (opening it would
    # block a naive reader forever).
    expected.add(("unreadable", sop_of(blocked), rel(root, blocked)))
    blocked.unlink()
    os.mkfifo(blocked)
    return expected


@pytest.mark.parametrize("level", ["full", "quick", "stat"])
def test_every_tampering_is_reported_exactly(copy: Path, lock: Path, level: str) -> None:
    expected = tamper_every_way(copy)
    report = verify_copy(lock, copy, level=level)
    assert kinds(report) == expected
    assert not report.clean
    bad_series = {f.series_uid for f in report.findings if f.series_uid}
    for status in report.series:
        assert status.status == ("problem" if status.series_uid in bad_series else "ok")
    truncated = next(f for f in report.findings if f.kind == "unreadable" and f.sop_uid)
    assert "truncated" in truncated.detail or "FIFO" in truncated.detail


def test_modified_finding_carries_both_md5s(copy: Path, lock: Path) -> None:
    target = next(image_files(copy))
    flip_bit_keep_mtime(target)
    (finding,) = verify_copy(lock, copy).findings
    assert finding.kind == "modified" and finding.path == rel(copy, target)
    assert len(finding.old) == 32 and len(finding.new) == 32 and finding.old != finding.new


def test_stat_catches_a_bit_flip_with_mtime_restored_through_ctime(copy: Path, lock: Path) -> None:
    target = next(image_files(copy))
    flip_bit_keep_mtime(target)
    report = verify_copy(lock, copy, level="stat")
    assert kinds(report) == {("modified", sop_of(target), rel(copy, target))}
    assert report.facts["hashed_md5"] == 1 and report.facts["unchanged_stat"] == 23


def test_quick_catches_silent_bit_rot_that_stat_cannot(copy: Path, lock: Path) -> None:
    """Rot beneath the filesystem changes bytes and no stat field. We make it by flipping
    a bit and then recording the file's new stat key as if it had always been so."""
    target = next(image_files(copy))
    path = rel(copy, target)
    flip_bit_keep_mtime(target)
    with LocalState(copy) as state:
        old = state.get(path)
        assert old is not None
        key = stat_key(target)
        state.upsert(
            [
                dataclasses.replace(
                    old,
                    fs_id=key.fs,
                    inode=key.inode,
                    size=key.size,
                    mtime_ns=key.mtime_ns,
                    ctime_ns=key.ctime_ns,
                )
            ]
        )
    stat = verify_copy(lock, copy, level="stat")
    assert stat.clean  # honest: the report says what stat cannot see
    assert "not re-read" in str(stat.facts["proof"]) and "not detected" in str(stat.facts["proof"])
    assert stat.facts["unchanged_stat"] == 24 and stat.facts["hashed_md5"] == 0
    quick = verify_copy(lock, copy, level="quick")
    assert kinds(quick) == {("modified", sop_of(target), path)}
    assert kinds(verify_copy(lock, copy, level="full")) == {("modified", sop_of(target), path)}


def test_new_and_changed_files_are_hashed_in_full_at_cheap_levels(copy: Path, lock: Path) -> None:
    files = list(image_files(copy))
    files[0].rename(files[0].with_name("moved.dcm"))  # a new path: no record
    os.utime(files[1])  # touched: new mtime, same bytes
    for level in ("quick", "stat"):
        report = verify_copy(lock, copy, level=level)
        assert report.clean
    # quick re-recorded the touched file's new stat key, so stat trusts it now.
    assert verify_copy(lock, copy, level="stat").facts["hashed_md5"] <= 2


def test_racily_clean_files_are_hashed_again(copy: Path, lock: Path) -> None:
    """A file modified within the mtime granularity of its last pass is never trusted by
    stat (git's racy-git rule): its mtime could hide a later same-second change."""
    target = next(image_files(copy))
    now = verify_copy(lock, copy)  # this pass records checked_at = now
    assert now.clean
    # A whole-second mtime a minute ahead: within the window of any check made before then,
    # however slowly this machine runs (the window's edges are unit-tested on Racy).
    ahead = (int(time.time()) + 60) * 1_000_000_000
    os.utime(target, ns=(ahead, ahead))
    verify_copy(lock, copy)  # records the new key, racily
    report = verify_copy(lock, copy, level="stat")
    assert report.clean and report.facts["hashed_md5"] == 1


def test_symbolic_links(copy: Path, lock: Path, tmp_path: Path) -> None:
    files = list(image_files(copy))
    # A link to a file outside the copy is read through: its bytes are what the copy holds.
    outside = tmp_path / "outside.dcm"
    shutil.move(files[0], outside)
    files[0].symlink_to(outside)
    # A dangling link where an image was is unreadable, attributed to that image.
    sop = sop_of(files[1])
    files[1].unlink()
    files[1].symlink_to(tmp_path / "gone.dcm")
    # A link to a directory is not followed (no loops, no escaping the copy).
    (copy / "loop").symlink_to(copy)
    report = verify_copy(lock, copy)
    assert kinds(report) == {
        ("unreadable", sop, rel(copy, files[1])),
        ("unreadable", "", "loop"),
    }
    assert report.complete  # nothing failed to read: these are findings, not I/O errors


@pytest.mark.skipif(sys.platform != "linux", reason="uses fork and setuid")
def test_unreadable_for_real_permissions(pristine: Path, lock: Path) -> None:
    """chmod 000 does not stop root, so the check runs in a child that drops to 'nobody'.

    The copy lives in a world-readable temporary folder; a file and a series directory are
    made unreadable; the child verifies and reports back through a pipe.
    """
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="nbia-verify-perm-"))
    try:
        base.chmod(0o755)
        root = clone(pristine, base / "copy")
        local_lock = base / "dataset.lock"
        shutil.copy2(lock, local_lock)
        shutil.copy2(lock.with_name(lock.name + ".db"), base / "dataset.lock.db")
        assert verify_copy(local_lock, root).clean  # as root: records every file
        files = list(image_files(root))
        secret = files[0]
        secret.chmod(0)
        hidden_dir = files[9].parent
        hidden_count = len(list(hidden_dir.iterdir()))
        hidden_dir.chmod(0)
        report = _verify_as_nobody(local_lock, root)
        findings = {
            (f["kind"], f.get("sop_uid", ""), f.get("path", "")) for f in report["findings"]
        }
        assert findings == {
            ("unreadable", sop_of(secret), rel(root, secret)),
            ("unreadable", "", rel(root, hidden_dir)),
        }
        assert report["complete"] is False and report["clean"] is False
        dir_finding = next(f for f in report["findings"] if "sop_uid" not in f)
        assert f"{hidden_count} images were below it" in dir_finding["detail"]
        assert "Permission denied" in json.dumps(report["findings"])
    finally:
        for path in base.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)


def _verify_as_nobody(lock: Path, root: Path) -> dict[str, Any]:
    if os.geteuid() != 0:  # already unprivileged: chmod 000 bites in-process
        return dict(json.loads(render_json(verify_copy(lock, root))))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop every privilege, verify, report, exit
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, render_json(verify_copy(lock, root, workers=2)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return dict(json.loads(b"".join(chunks)))


@pytest.mark.parametrize("level", ["full", "quick", "stat"])
def test_a_file_cut_inside_its_header_is_one_finding(copy: Path, lock: Path, level: str) -> None:
    """Cut before the SOPInstanceUID, a file no longer names its image; the last pass's
    record does, so the one tampering is one ``unreadable`` finding, not also ``missing``."""
    target = next(image_files(copy))
    sop = sop_of(target)
    os.truncate(target, 200)  # past the 'DICM' marker, inside the file meta group
    expected = {("unreadable", sop, rel(copy, target))}
    for _ in range(2):  # and again: the record that names the image is kept
        report = verify_copy(lock, copy, level=level)
        assert kinds(report) == expected
        (finding,) = report.findings
        assert finding.series_uid and f"held image {sop}" in finding.detail


def test_a_state_database_copied_with_the_tree_is_not_trusted(
    copy: Path, lock: Path, tmp_path: Path
) -> None:
    """A record is trusted only for the inode it was taken on. A tree copied with its
    state database (rsync, cp -a), even one whose records were crafted to fit tampered
    files, is hashed in full."""
    shipped = clone(copy, tmp_path / "shipped")
    target = next(image_files(shipped))
    path = rel(shipped, target)
    flip_bit_keep_mtime(target)
    with LocalState(shipped) as state:  # craft: the tampered bytes' fingerprint, old MD5
        old = state.get(path)
        assert old is not None
        key = stat_key(target)
        fake = xxh3_file(target).xxh3_128
        state.upsert(
            [
                dataclasses.replace(
                    old, xxh3_128=fake, size=key.size, mtime_ns=key.mtime_ns,
                    ctime_ns=key.ctime_ns,
                )
            ]
        )  # fmt: skip
    for level in ("quick", "stat"):
        report = verify_copy(lock, shipped, level=level)
        assert kinds(report) == {("modified", sop_of(target), path)}, level
    untouched = clone(copy, tmp_path / "untouched")
    quick = verify_copy(lock, untouched, level="quick")
    assert quick.clean and quick.facts["hashed_md5"] == 24 and quick.facts["proven_xxh3"] == 0
    again = verify_copy(lock, untouched, level="quick")  # now its own records: trusted
    assert again.clean and again.facts["proven_xxh3"] == 24

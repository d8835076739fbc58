"""Streaming digests and header-only DICOM identity reads, on real files."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from nbia_audit.dicom.header import NotDicomError, read_identity
from nbia_audit.digests import BLOCK_SIZE, digest_file, digest_stream, xxh3_file

CT_SMALL = Path(str(get_testdata_file("CT_small.dcm")))


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, 3 * BLOCK_SIZE + 17])
def test_digests_match_hashlib_and_xxhash(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = digest_file(path)
    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest.xxh3_128 == xxhash.xxh3_128(data).hexdigest()
    assert digest.size == size
    assert xxh3_file(path).md5 == ""
    assert digest_stream(io.BytesIO(data)) == digest


@pytest.mark.skipif(shutil.which("md5sum") is None, reason="coreutils md5sum not installed")
def test_md5_agrees_with_coreutils() -> None:
    out = subprocess.run(["md5sum", str(CT_SMALL)], capture_output=True, text=True, check=True)
    assert digest_file(CT_SMALL).md5 == out.stdout.split()[0]


def test_read_identity_of_real_dicom() -> None:
    ident = read_identity(CT_SMALL)
    assert ident.sop_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert ident.series_uid.startswith("1.3.6.1.4.1.5962")
    assert ident.patient_id == "1CT1"


def test_non_dicom_and_truncated_files_are_not_dicom(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello, not a DICOM file" * 40)
    with pytest.raises(NotDicomError):
        read_identity(junk)
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(CT_SMALL.read_bytes()[:200])
    with pytest.raises(NotDicomError):
        read_identity(truncated)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(NotDicomError):
        read_identity(empty)


@given(st.integers(0, len(CT_SMALL.read_bytes())), st.binary(max_size=64))
def test_any_truncation_or_corruption_reads_or_says_not_dicom(cut: int, junk: bytes) -> None:
    data = CT_SMALL.read_bytes()[:cut] + junk
    try:
        ident = read_identity(io.BytesIO(data))
    except NotDicomError:
        return
    assert ident.sop_uid

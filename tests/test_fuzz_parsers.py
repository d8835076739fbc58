"""Fuzzing the readers of untrusted input: for every generated input, only the reader's
documented error type (never a traceback of another kind), and bounded memory.

Readers: the spec loader, the manifest reader, the text-lock reader, the archive's CSV
reader (client) and the series ZIP checker. Inputs are both structured (YAML with aliases
and deep nesting, manifests, zips with hostile members and CSVs) and mutations of valid
ones. Memory is measured per input with tracemalloc (Python allocations, which is where a
parser's blow-up lands). Example counts are kept moderate so the file runs in well under a
minute.
"""

from __future__ import annotations

import io
import os
import random
import sqlite3
import tempfile
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from nbia_audit.client.parse import decode_csv_rows
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.errors import ApiProtocolError, SpecError, StoreError
from nbia_audit.fetch.zipcheck import (
    SeriesCheck,
    SeriesExpectation,
    check_series_zip,
    unsafe_member,
)
from nbia_audit.manifest import Manifest, format_manifest, parse_manifest, read_manifest
from nbia_audit.models import LockedSeries, LockHeader
from nbia_audit.spec.load import parse_spec
from nbia_audit.store.reader import read_lock
from nbia_audit.store.textlock import database_path, read_text_lock, render_text_lock, root_digest
from tests.support.fetch import make_lock

# CI runs a quick pass; a soak sets NBIA_AUDIT_FUZZ_EXAMPLES (e.g. 5000) for a long one.
EXAMPLES = int(os.environ.get("NBIA_AUDIT_FUZZ_EXAMPLES", "120"))
MEMORY_LIMIT = 64 << 20  # bytes of Python allocations per input; every input here is small
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T = TypeVar("T")


@contextmanager
def bounded_memory() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"peak {peak >> 20} MiB of Python allocations"


def only(errors: tuple[type[BaseException], ...], call: Callable[[], T]) -> T | None:
    """Run ``call`` in bounded memory; any exception but ``errors`` fails the test."""
    with bounded_memory():
        try:
            return call()
        except errors:
            return None


# Edits that tend to break parsers: structure characters, quotes, escapes, line breaks,
# YAML anchors and aliases, long runs, odd Unicode.
_PIECES = st.sampled_from(
    [
        "[", "]", "{", "}", ":", ": ", "- ", ",", '"', "'", "\\", "\\u", "\\U0010ffff", "\n",
        "\r\n", "\t", " ", "#", "&a ", "*a", "<<: *a", "!!python/object", "=", "\x00", "\ufeff",
        "\ud800", "é", "1.2.3", "=\n", "[[[[", "]]]]", "0x", "-1", "1e999", "~", "null",
    ]
)  # fmt: skip
_EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "truncate", "repeat"]),
    st.floats(0, 1),
    st.one_of(_PIECES, st.text(max_size=8)),
    st.integers(1, 40),
)


def mutate(text: str, edits: list[tuple[str, float, str, int]]) -> str:
    for op, where, piece, length in edits:
        at = int(where * len(text))
        if op == "insert":
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + length :]
        elif op == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        elif op == "truncate":
            text = text[:at]
        else:  # repeat a span: long lines, repeated keys
            text = text[:at] + text[at : at + length] * length + text[at:]
    return text


# -- the spec loader ---------------------------------------------------------------------------

UID = "1.3.6.1.4.1.14519.5.2.1.7"
VALID_SPEC = f"""\
name: fuzz
description: a spec to mutate
server: public
select:
  - collection: LIDC-IDRI
    modality: [CT, MR]
    released_after: 2015-01-01
  - series: ["{UID}"]
  - search: {{collection: [A], modality: CT}}
exclude:
  - studies: ["{UID}"]
options:
  include_annotations: true
"""
_SPEC_KEYS = st.sampled_from(
    ["name", "select", "exclude", "options", "collection", "modality", "series", "search",
     "doi", "manifest", "released_after", "api", "server", "patients", "?", ""]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["CT", "public", "v4", UID, "2020-01-01", "10.7937/K9", "a.tcia"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_SPEC_KEYS, inner, max_size=4),
    max_leaves=25,
)


@st.composite
def shared_structure(draw: st.DrawFn) -> Any:
    """Values that reuse one object many times: yaml.dump writes them as anchors and
    aliases, so a few hundred bytes stand for a huge (or exponential) expansion."""
    value: Any = draw(_VALUES)
    for _ in range(draw(st.integers(0, 14))):
        breadth = draw(st.integers(1, 12))
        value = (
            [value] * breadth if draw(st.booleans()) else {f"k{i}": value for i in range(breadth)}
        )
    return value


@st.composite
def structured_specs(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {"name": draw(st.sampled_from(["x", "", "a b", "ok-1"]))}
    selector = draw(st.dictionaries(_SPEC_KEYS, st.one_of(_VALUES, shared_structure()), max_size=4))
    doc["select"] = draw(st.sampled_from([[selector], selector, [selector, selector]]))
    for key in draw(st.lists(_SPEC_KEYS, max_size=3)):
        doc[key] = draw(st.one_of(_VALUES, shared_structure()))
    text = yaml.safe_dump(doc, default_flow_style=draw(st.booleans()), allow_unicode=True)
    depth = draw(
        st.sampled_from([0, 0, 0, 3, 63, 64, 65, 300])
    )  # MAX_DEPTH is 64; 20,000 in test_bounds
    if depth:  # a deeply nested flow value in some place
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        text += f"{draw(_SPEC_KEYS) or 'x'}: {opener * depth}{closer * depth}\n"
    return text


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
@given(structured_specs())
def test_spec_loader_structured(text: str) -> None:
    only((SpecError,), lambda: parse_spec(text, path="fuzz.yaml"))


@FUZZ
@given(st.lists(_EDIT, min_size=1, max_size=6))
def test_spec_loader_mutated(edits: list[tuple[str, float, str, int]]) -> None:
    text = mutate(VALID_SPEC, edits)
    only((SpecError,), lambda: parse_spec(text, path="fuzz.yaml"))


def test_spec_billion_laughs_at_every_depth() -> None:
    for levels in range(1, 12):
        value: Any = ["lol"] * 9
        for _ in range(levels):
            value = [value] * 9
        text = yaml.safe_dump({"name": "x", "select": value})
        only((SpecError,), lambda text=text: parse_spec(text, path="laughs.yaml"))


# -- the manifest reader -----------------------------------------------------------------------

VALID_MANIFEST = format_manifest(
    Manifest(series_uids=(UID, UID + ".1", UID + ".22"), include_annotation=True)
)
_MANIFEST_LINES = st.one_of(
    st.sampled_from(
        [
            "ListOfSeriesToDownload=",
            "manifestVersion=3.0",
            "manifestVersion=2",
            "noOfrRetry=x",
            "includeAnnotation=maybe",
            "Series ID",
            UID,
            "1..2",
            "." * 70,
            "9" * 65,
            "# c",
            "k:v",
        ]
    ),  # fmt: skip
    st.text(max_size=40),
    st.from_regex(r"[0-9.]{1,80}", fullmatch=True),
)


@FUZZ
@given(st.lists(_MANIFEST_LINES, max_size=30), st.sampled_from(["\n", "\r\n", "\r"]))
def test_manifest_reader_structured(lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    only((SpecError,), lambda: parse_manifest(text, source="fuzz.tcia"))


@FUZZ
@given(st.lists(_EDIT, min_size=1, max_size=6))
def test_manifest_reader_mutated(edits: list[tuple[str, float, str, int]]) -> None:
    text = mutate(VALID_MANIFEST, edits)
    only((SpecError,), lambda: parse_manifest(text, source="fuzz.tcia"))


@FUZZ
@given(st.binary(max_size=400))
def test_manifest_file_of_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.tcia"
        path.write_bytes(data)
        only((SpecError,), lambda: read_manifest(path))


# -- the text-lock reader ----------------------------------------------------------------------


def _series(uid: str, images: int) -> LockedSeries:
    return LockedSeries(
        series_uid=uid, collection="C", patient_id="P\t1", study_uid="1.2.3", modality="CT",
        description='say "hi" \\ \u00e9', series_number="2", body_part="CHEST",
        manufacturer="ACME", image_count=images, bytes=1000 * images, series_hash="ab" * 16,
        released="2020-01-02", max_submission="2020-01-01T10:00:00", license_name="CC BY 4.0",
        license_url="https://creativecommons.org/licenses/by/4.0/", doi="https://doi.org/10.1/X",
        third_party=False, images_pinned=True,
    )  # fmt: skip


_LOCK_SERIES = [_series("1.2.3.4", 2), _series("1.2.3.5", 3)]
VALID_LOCK = render_text_lock(
    LockHeader(
        format=2,
        name="fuzz",
        spec_digest="sha256:" + "0" * 64,
        server="public",
        base_url="https://services.cancerimagingarchive.net/nbia-api/services",
        api="v4",
        tool_version="0.1.0",
        resolved_at="2026-11-25T06:00:00Z",
        root_digest=root_digest(_LOCK_SERIES),
        series_count=2,
        image_count=5,
        total_bytes=5000,
        series_only=False,
        metadata_digest="sha256:" + "1" * 64,
    ),  # fmt: skip
    '{"name":"fuzz"}',
    _LOCK_SERIES,
)


@pytest.fixture(scope="module")
def lock_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "dataset.lock"


def test_the_lock_to_mutate_is_valid(lock_file: Path) -> None:
    lock_file.write_text(VALID_LOCK, encoding="utf-8")
    assert read_text_lock(lock_file).header.series_count == 2


@FUZZ
@given(edits=st.lists(_EDIT, min_size=1, max_size=6))
def test_text_lock_reader_mutated(
    lock_file: Path, edits: list[tuple[str, float, str, int]]
) -> None:
    lock_file.write_bytes(mutate(VALID_LOCK, edits).encode("utf-8", "surrogatepass"))
    only((StoreError,), lambda: read_text_lock(lock_file))


@FUZZ
@given(data=st.binary(max_size=600))
def test_text_lock_reader_any_bytes(lock_file: Path, data: bytes) -> None:
    lock_file.write_bytes(data)
    only((StoreError,), lambda: read_text_lock(lock_file))


def test_text_lock_reader_memory_is_bounded(lock_file: Path) -> None:
    lock_file.write_text(VALID_LOCK, encoding="utf-8")
    only((StoreError,), lambda: read_text_lock(lock_file))


@pytest.fixture(scope="module")
def lock_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real lock pair (text and database) from the emulator."""
    corpus = CorpusSpec(seed=3, collections=1, patients=1, studies=1, series=2, images=2)
    with Emulator.from_spec(corpus) as emu:
        lock = make_lock(tmp_path_factory.mktemp("pair"), emu)
    return lock, lock.read_text(encoding="utf-8")


@FUZZ
@given(edits=st.lists(_EDIT, min_size=1, max_size=6))
def test_lock_pair_reader_mutated_text(
    lock_pair: tuple[Path, str], edits: list[tuple[str, float, str, int]]
) -> None:
    """lockproof.read_lock: the database stays, the text lock is edited."""
    lock, text = lock_pair
    lock.write_bytes(mutate(text, edits).encode("utf-8", "surrogatepass"))
    try:
        only((StoreError,), lambda: read_lock(lock))
    finally:
        lock.write_text(text, encoding="utf-8")


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_lock_pair_reader_flipped_database(
    lock_pair: tuple[Path, str], flips: list[tuple[float, int]]
) -> None:
    """lockproof.read_lock: the text stays, bytes of the database are changed."""
    lock, _ = lock_pair
    db = database_path(lock)
    pristine = db.read_bytes()
    db.write_bytes(mutate_bytes(pristine, flips))
    try:
        only((StoreError,), lambda: read_lock(lock))
    finally:
        db.write_bytes(pristine)


def test_lock_pair_reader_database_text_that_is_not_utf8(lock_pair: tuple[Path, str]) -> None:
    """Found by the soak: a flipped byte in the schema raised UnicodeDecodeError."""
    lock, _ = lock_pair
    db = database_path(lock)
    pristine = db.read_bytes()
    try:
        conn = sqlite3.connect(db)
        with conn:  # a column name that is not UTF-8, as a flipped schema byte makes it
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute(
                "UPDATE sqlite_master SET sql = replace(sql, 'collection',"
                " CAST(x'80' AS TEXT) || 'ollection') WHERE name = 'series'"
            )
        conn.close()
        with pytest.raises(StoreError):
            read_lock(lock)
    finally:
        db.write_bytes(pristine)


# -- the archive's CSV answers (client; read only here) ---------------------------------------

_CSV_CELLS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(['"', '""', '"a""b"', "\r\n", "\n", ",", "\x00", "\ufeff", "é"]),
)


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(st.lists(_CSV_CELLS, max_size=6), max_size=8))
    text = "\n".join(",".join(row) for row in rows)
    if draw(st.booleans()):
        text = '"Series UID","Collection"\n' + text
    return text.encode(
        draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"])), "replace"
    )


@FUZZ
@given(csv_bodies())
def test_client_csv_reader(body: bytes) -> None:
    only((ApiProtocolError,), lambda: decode_csv_rows(body, "getSeries"))


def test_client_csv_reader_huge_field() -> None:
    body = b'"Series UID","Collection"\n"1.2.3","' + b"x" * (200 << 10) + b'"\n'
    only((ApiProtocolError,), lambda: decode_csv_rows(body, "getSeries"))


# -- the series ZIP checker --------------------------------------------------------------------

DICOM = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
COMPRESSIONS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
_MEMBER_NAMES = st.one_of(
    st.sampled_from(
        [
            "1-01.dcm",
            "1-02.dcm",
            "md5hashes.csv",
            "LICENSE",
            "../evil.dcm",
            "/abs.dcm",
            "C:x.dcm",
            "dir/",
            "a/b.dcm",
            "a\\b.dcm",
            "ctl\x01.dcm",
            "",
        ]
    ),  # fmt: skip
    st.text(max_size=12),
)
_CONTENTS = st.one_of(
    st.just(DICOM),
    st.binary(max_size=200),
    st.integers(0, len(DICOM)).map(lambda n: DICOM[:n]),
)


@st.composite
def md5_csvs(draw: st.DrawFn, names: list[str]) -> bytes:
    rows = ["Filename,MD5Hash"] if draw(st.booleans()) else [draw(st.text(max_size=20))]
    for name in names:
        md5 = draw(st.sampled_from(["", "0" * 32, "abc", "x,y", '"q"']))
        rows.append(f"{name},{md5}" if draw(st.booleans()) else draw(st.text(max_size=30)))
    return "\n".join(rows).encode("utf-8", "surrogatepass")


@st.composite
def series_zips(draw: st.DrawFn) -> bytes:
    members = draw(st.lists(st.tuples(_MEMBER_NAMES, _CONTENTS), max_size=5))
    method = draw(st.sampled_from(COMPRESSIONS))
    csv = draw(md5_csvs([n for n, _ in members])) if draw(st.booleans()) else None
    buffer = io.BytesIO()
    # Duplicate names are one of the hostile cases: zipfile warns, and writes them.
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", method) as archive:
        warnings.simplefilter("ignore")
        for name, content in members:
            try:
                archive.writestr(name or "x", content)
            except (UnicodeEncodeError, ValueError, IndexError):  # names zipfile refuses
                continue
        if csv is not None:
            archive.writestr("md5hashes.csv", csv)
    data = buffer.getvalue()
    return mutate_bytes(
        data, draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3))
    )


def mutate_bytes(data: bytes, flips: list[tuple[float, int]]) -> bytes:
    out = bytearray(data)
    for where, value in flips:
        if out:
            out[min(int(where * len(out)), len(out) - 1)] = value
    return bytes(out)


def check(data: bytes, image_count: int) -> SeriesCheck | None:
    with tempfile.TemporaryDirectory() as folder:
        zip_path = Path(folder) / "series.zip"
        zip_path.write_bytes(data)
        workdir = Path(folder) / "work"
        workdir.mkdir()
        expect = SeriesExpectation(
            series_uid="1.2.3", series_hash="0" * 32, image_count=image_count,
            archive_objects=None, pinned=None, max_bytes=1 << 20,
        )  # fmt: skip
        result = only((OSError,), lambda: check_series_zip(zip_path, expect, workdir))
        assert result is not None, "ziptools raised OSError on a readable workdir"
        return result


@FUZZ
@given(series_zips(), st.integers(0, 5))
def test_zip_checker(data: bytes, image_count: int) -> None:
    result = check(data, image_count)
    assert isinstance(result, SeriesCheck)
    if result.problems:
        assert all(len(p) < 2000 for p in result.problems)


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_zip_checker_on_byte_flips_of_a_valid_series(method: int) -> None:
    """Seeded, so CI always meets what the fuzzer found: an unsupported version or
    compression method (NotImplementedError), offsets outside the file (OSError EINVAL),
    corrupt bz2 (OSError) and lzma (LZMAError) streams."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr("1-01.dcm", DICOM)
        archive.writestr("md5hashes.csv", "Filename,MD5Hash\n1-01.dcm,\n")
    valid = buffer.getvalue()
    rng = random.Random(method)
    for _ in range(120):
        flips = [(rng.random(), rng.randrange(256)) for _ in range(rng.randint(1, 3))]
        assert isinstance(check(mutate_bytes(valid, flips), 1), SeriesCheck)


def test_zip_checker_member_name_flagged_utf8_that_is_not() -> None:
    """Found by the soak: zipfile raised UnicodeDecodeError while listing the members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("\u00e9.dcm", DICOM)  # not ASCII: zipfile flags the name UTF-8
        archive.writestr("md5hashes.csv", "Filename,MD5Hash\n")
    data = buffer.getvalue().replace("\u00e9.dcm".encode(), b"\xc3(.dcm")
    result = check(data, 1)
    assert result is not None and "not a readable ZIP" in result.problems[0]


def test_zip_member_with_an_empty_name_is_unsafe() -> None:
    """Found by the soak: ZipInfo.is_dir() raised IndexError on an empty name."""
    assert unsafe_member(zipfile.ZipInfo("")) == "an empty name or control characters"


def test_zip_checker_huge_csv_field() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("1-01.dcm", DICOM)
        archive.writestr("md5hashes.csv", b"Filename,MD5Hash\n1-01.dcm," + b"a" * (200 << 10))
    result = check(buffer.getvalue(), 1)
    assert result is not None
    assert result.problems[0].startswith("md5hashes.csv is not a readable CSV")

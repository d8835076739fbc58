"""Tests for nbia_audit.manifest: real manifests, the Java reader's rule, errors, round trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbia_audit.errors import SpecError
from nbia_audit.manifest import (
    DEFAULT_DOWNLOAD_SERVER_URL,
    Manifest,
    format_manifest,
    parse_manifest,
    read_manifest,
)

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "real-samples"
REAL_MANIFESTS = sorted(SAMPLES.glob("manifest__*.tcia")) if SAMPLES.is_dir() else []
needs_samples = pytest.mark.skipif(not REAL_MANIFESTS, reason="real samples are not present")

MINIMAL = "manifestVersion=3.0\nListOfSeriesToDownload=\n1.2.3\n4.5.6\n"


def _uid_lines(text: str) -> list[str]:
    """The sample's UIDs as a regex reads them: whole lines of digits and dots."""
    return re.findall(r"^([0-9.]+)\r?$", text, flags=re.MULTILINE)


@needs_samples
@pytest.mark.parametrize("path", REAL_MANIFESTS, ids=lambda p: p.name)
def test_every_real_manifest_parses_to_its_uid_lines(path: Path) -> None:
    text = path.read_text()
    manifest = read_manifest(path)
    assert list(manifest.series_uids) == _uid_lines(text)
    assert manifest.series_uids
    assert manifest.manifest_version == "3.0"
    assert manifest.retries == 4
    assert manifest.databasket_id is not None and manifest.databasket_id.startswith("manifest-")
    assert manifest.download_server_url is not None
    assert manifest.download_server_url.endswith("/nbia-download/servlet/DownloadServlet")
    assert manifest.warnings == ()


@needs_samples
def test_series_id_heading_is_skipped_like_the_java_reader_does() -> None:
    text = (SAMPLES / "manifest__6.tcia").read_text()
    assert "Series ID" in text
    manifest = parse_manifest(text.rstrip("\n"))  # the original has no final newline
    assert len(manifest.series_uids) == 19
    assert all(uid.startswith("2.25.") for uid in manifest.series_uids)


@needs_samples
def test_include_annotation_false_and_trailing_empty_line() -> None:
    assert read_manifest(SAMPLES / "manifest__2.tcia").include_annotation is False
    text = (SAMPLES / "manifest__5.tcia").read_text()
    assert text.endswith("\n\n")
    assert len(parse_manifest(text).series_uids) == 14


@needs_samples
@pytest.mark.parametrize("path", REAL_MANIFESTS, ids=lambda p: p.name)
def test_line_endings_and_trailing_blank_lines_do_not_matter(path: Path) -> None:
    text = path.read_text()
    expected = parse_manifest(text)
    assert parse_manifest(text.replace("\n", "\r\n")) == expected
    assert parse_manifest(text.rstrip("\n")) == expected
    assert parse_manifest(text + "\n\n  \n\t\n") == expected
    assert parse_manifest("\ufeff" + text) == expected


@needs_samples
@pytest.mark.parametrize("path", REAL_MANIFESTS, ids=lambda p: p.name)
def test_real_manifests_survive_a_write_and_read(path: Path) -> None:
    manifest = read_manifest(path)
    assert parse_manifest(format_manifest(manifest)) == manifest


def test_java_rule_keeps_only_digits_and_dots_and_reports_what_it_dropped() -> None:
    text = "ListOfSeriesToDownload=\n  1.2.3 \t\nuid: 4.5.6\nSeries ID\n---\n"
    manifest = parse_manifest(text, source="cart.tcia")
    assert manifest.series_uids == ("1.2.3", "4.5.6")
    assert manifest.warnings == ("cart.tcia:3: read 4.5.6 from 'uid: 4.5.6'",)


def test_value_after_the_list_marker_counts_as_a_first_uid() -> None:
    assert parse_manifest("ListOfSeriesToDownload=1.2.3\n4.5\n").series_uids == ("1.2.3", "4.5")


def test_comments_blank_lines_and_colon_separators_in_the_header() -> None:
    text = (
        "# made by hand\n\n! another comment\n"
        "includeAnnotation : TRUE\nListOfSeriesToDownload=\n1.2\n"
    )
    manifest = parse_manifest(text)
    assert manifest.include_annotation is True
    assert manifest.series_uids == ("1.2",)


def test_unknown_header_keys_and_data_type_are_kept() -> None:
    text = "dataType=other\ncustom=x=y\nListOfSeriesToDownload=\n1.2\n"
    manifest = parse_manifest(text)
    assert manifest.data_type == "other"
    assert manifest.extra == (("custom", "x=y"),)
    again = parse_manifest(format_manifest(manifest))
    assert (again.data_type, again.extra) == (manifest.data_type, manifest.extra)


def test_duplicates_are_kept_in_order_and_unique_view_drops_them() -> None:
    manifest = parse_manifest("ListOfSeriesToDownload=\n1.2\n3.4\n1.2\n")
    assert manifest.series_uids == ("1.2", "3.4", "1.2")
    assert manifest.unique_series_uids == ("1.2", "3.4")


def test_missing_header_values_get_defaults_when_written() -> None:
    text = format_manifest(Manifest(series_uids=("1.2", "3.4")))
    assert text == (
        f"downloadServerUrl={DEFAULT_DOWNLOAD_SERVER_URL}\n"
        "includeAnnotation=false\nnoOfrRetry=4\ndatabasketId=manifest-nbia-audit.tcia\n"
        "manifestVersion=3.0\nListOfSeriesToDownload=\n1.2\n3.4\n"
    )


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_manifest(text, source="data/cohort.tcia")
    return caught.value


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("ListOfSeriesToDownload=\n1.2.3\n1..2\n", 3, "not a SeriesInstanceUID"),
        ("ListOfSeriesToDownload=\n.1.2\n", 2, "not a SeriesInstanceUID"),
        ("ListOfSeriesToDownload=\n1.2.\n", 2, "not a SeriesInstanceUID"),
        ("ListOfSeriesToDownload=\n" + "1." * 40 + "1\n", 2, "at most 64"),
        ("includeAnnotation=true\n1.2.3\nListOfSeriesToDownload=\n", 2, "expected 'key=value'"),
        ("manifestVersion=2.0\nListOfSeriesToDownload=\n1.2\n", 1, "not supported"),
        ("includeAnnotation=maybe\nListOfSeriesToDownload=\n1.2\n", 1, "true or false"),
        ("noOfrRetry=four\nListOfSeriesToDownload=\n1.2\n", 1, "whole number"),
        ("downloadServerUrl=x\nincludeAnnotation=true\n", 2, "no 'ListOfSeriesToDownload=' line"),
    ],
)
def test_parse_errors_name_the_file_and_line(text: str, line: int, words: str) -> None:
    error = _error(text)
    assert error.path == "data/cohort.tcia"
    assert error.line == line
    assert words in str(error)
    assert str(error).startswith(f"data/cohort.tcia:{line}: ")


def test_an_empty_file_is_not_a_manifest() -> None:
    error = _error("")
    assert error.line is None and "ListOfSeriesToDownload" in str(error)


def test_read_manifest_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        read_manifest(tmp_path / "nope.tcia")
    assert str(tmp_path / "nope.tcia") in str(caught.value)


def test_read_manifest_accepts_latin1_bytes(tmp_path: Path) -> None:
    path = tmp_path / "legacy.tcia"
    path.write_bytes(b"databasketId=caf\xe9.tcia\nListOfSeriesToDownload=\n1.2\n")
    assert read_manifest(path).databasket_id == "caf\u00e9.tcia"


# -- properties ------------------------------------------------------------------------------------

uids = (
    st.lists(st.integers(min_value=0, max_value=10**12).map(str), min_size=1, max_size=8)
    .map(".".join)
    .filter(lambda uid: len(uid) <= 64)
)
# Property values: no line breaks (str.splitlines' set), no leading/trailing blanks.
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
values = (
    st.text(st.characters(codec="utf-8", exclude_characters=_BREAKS), min_size=1)
    .map(str.strip)
    .filter(bool)
)
manifests = st.builds(
    Manifest,
    series_uids=st.lists(uids, max_size=20).map(tuple),
    include_annotation=st.booleans(),
    download_server_url=st.none() | values,
    databasket_id=st.none() | values,
    retries=st.none() | st.integers(min_value=0, max_value=99),
)
# A junk line has no ASCII digit and no dot, so the Java rule reduces it to nothing.
junk_lines = st.text(st.characters(codec="utf-8", exclude_characters=_BREAKS + "0123456789."))


def _normalised(manifest: Manifest) -> Manifest:
    """What a write-then-read gives back: unset header values come back as the defaults."""
    return Manifest(
        series_uids=manifest.series_uids,
        include_annotation=manifest.include_annotation,
        download_server_url=manifest.download_server_url or DEFAULT_DOWNLOAD_SERVER_URL,
        databasket_id=manifest.databasket_id or "manifest-nbia-audit.tcia",
        retries=4 if manifest.retries is None else manifest.retries,
    )


@given(manifests)
def test_write_then_parse_round_trips(manifest: Manifest) -> None:
    assert parse_manifest(format_manifest(manifest)) == _normalised(manifest)


@given(manifests, st.data())
def test_junk_lines_in_the_list_are_ignored(manifest: Manifest, data: st.DataObject) -> None:
    header, _, listed = format_manifest(manifest).partition("ListOfSeriesToDownload=\n")
    lines = listed.splitlines()
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        lines.insert(
            data.draw(st.integers(min_value=0, max_value=len(lines))), data.draw(junk_lines)
        )
    text = header + "ListOfSeriesToDownload=\n" + "\n".join(lines)
    assert parse_manifest(text).series_uids == manifest.series_uids


@given(manifests, st.sampled_from(["\n", "\r\n", "\r"]), st.integers(min_value=0, max_value=3))
def test_line_endings_and_trailing_blank_lines_are_irrelevant(
    manifest: Manifest, newline: str, blank_lines: int
) -> None:
    text = format_manifest(manifest).rstrip("\n").replace("\n", newline) + newline * blank_lines
    assert parse_manifest(text) == _normalised(manifest)

"""The dataset spec: valid forms, normalisation, and a clear error for every kind of bad spec."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbia_audit.errors import SpecError
from nbia_audit.spec.load import load_spec, parse_spec
from tests.support.spec import BAD_SPECS

UID1 = "1.3.6.1.4.1.14519.5.2.1.1"
UID2 = "1.3.6.1.4.1.14519.5.2.1.2"

GOOD = f"""\
name: lung-study
description: CT of the chest
server: public
select:
  - collection: LIDC-IDRI
  - collection: TCGA-LUAD
    modality: [CT, PT]
    body_part: CHEST
    patients: [TCGA-05-4244]
    released_after: 2015-01-01
    released_before: "2024-12-31"
  - series: ["{UID2}", "{UID1}"]
  - studies: ["{UID1}"]
    collection: TCGA-LUAD
  - doi: 10.7937/K9/TCIA.2015.PF0M9REI
  - cart: nbia-49121659384603347
  - search: {{collection: [LIDC-IDRI], modality: CT}}
  - text: adenocarcinoma
exclude:
  - series: ["{UID1}"]
options:
  include_annotations: true
"""


def write(tmp_path: Path, text: str, name: str = "dataset.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_good_spec_parses_every_selector_kind(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    kinds = [s.kind for s in spec.select]
    assert kinds == [
        "collection",
        "collection",
        "series",
        "studies",
        "doi",
        "cart",
        "search",
        "text",
    ]
    luad = spec.select[1]
    assert luad.modality == ("CT", "PT")
    assert luad.body_part == ("CHEST",)
    assert luad.released_after == dt.date(2015, 1, 1)
    assert luad.released_before == dt.date(2024, 12, 31)
    assert spec.select[2].series == (UID1, UID2)  # sorted
    assert spec.select[4].doi == "https://doi.org/10.7937/K9/TCIA.2015.PF0M9REI"
    assert dict(spec.select[6].search) == {"collection": ("LIDC-IDRI",), "modality": ("CT",)}
    assert spec.exclude[0].series == (UID1,)
    assert spec.options.include_annotations is True
    assert spec.server == "public" and spec.api == "v4"
    assert spec.select[1].line == 6 and spec.select[1].where == "select[1]"


def test_defaults(tmp_path: Path) -> None:
    spec = parse_spec("name: x\nselect:\n  - collection: C\n")
    assert spec.server == "public"
    assert spec.api == "v4"
    assert spec.description == ""
    assert spec.exclude == ()
    assert spec.options.include_annotations is False


def test_url_server_is_kept_without_trailing_slash() -> None:
    spec = parse_spec(
        "name: x\nserver: http://127.0.0.1:8080/nbia-api/services/\nselect: [{collection: C}]"
    )
    assert spec.server == "http://127.0.0.1:8080/nbia-api/services"


def test_digest_ignores_formatting_and_order_of_uids() -> None:
    a = parse_spec(f"name: x\nselect:\n  - series: ['{UID1}', '{UID2}']\n")
    b = parse_spec(
        f"# comment\nname: x\nselect:\n- series:\n  - '{UID2}'\n  - '{UID1}'\n  - '{UID1}'\n"
    )
    assert a.digest() == b.digest()
    assert a.digest().startswith("sha256:") and len(a.digest()) == 71


def test_digest_changes_with_content() -> None:
    a = parse_spec("name: x\nselect: [{collection: C}]")
    b = parse_spec("name: x\nselect: [{collection: C, modality: CT}]")
    assert a.digest() != b.digest()


def test_manifest_selector_reads_series_relative_to_spec(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.tcia").write_text(
        "downloadServerUrl=https://x/nbia-download/servlet/DownloadServlet\n"
        "includeAnnotation=true\nnoOfrRetry=4\ndatabasketId=manifest-1.tcia\n"
        f"manifestVersion=3.0\nListOfSeriesToDownload=\n{UID2}\n{UID1}\n\n"
    )
    spec = load_spec(write(tmp_path, "name: x\nselect:\n  - manifest: sub/m.tcia\n"))
    assert spec.select[0].kind == "manifest"
    assert spec.select[0].manifest == "sub/m.tcia"
    assert spec.select[0].series == (UID1, UID2)


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [case[1:] for case in BAD_SPECS],
    ids=[case[0] for case in BAD_SPECS],
)
def test_bad_spec_names_file_line_and_key(
    tmp_path: Path, text: str, line: int | None, key: str | None, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    error = info.value
    message = str(error)
    assert error.path == str(path)
    assert message.startswith(str(path))
    assert error.line == line, message
    if key is not None:
        assert error.key == key, message
        assert f": {key}: " in message
    assert words in message, message


def test_at_least_25_kinds_of_bad_spec() -> None:
    assert len(BAD_SPECS) >= 25


MANIFEST_CASES = [
    ("missing manifest", None, "no such manifest"),
    ("not a manifest", "hello world\n", "bad manifest"),
    (
        "manifest without series",
        "downloadServerUrl=x\nmanifestVersion=3.0\nListOfSeriesToDownload=\n",
        "lists no series",
    ),
]


@pytest.mark.parametrize(
    ("label", "content", "words"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES]
)
def test_bad_manifest_selector(tmp_path: Path, label: str, content: str | None, words: str) -> None:
    if content is not None:
        (tmp_path / "m.tcia").write_text(content)
    path = write(tmp_path, "name: x\nselect:\n  - manifest: m.tcia\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.line == 3
    assert info.value.key == "select[0].manifest"
    assert words in str(info.value)


def test_unreadable_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match="UTF-8"):
        load_spec(binary)


uids = st.lists(
    st.integers(1, 10**12).map(lambda n: f"1.2.840.{n}"), min_size=1, max_size=6, unique=True
)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(names, names, uids, st.lists(st.sampled_from(["CT", "MR", "PT", "SEG"]), min_size=1))
def test_generated_specs_parse_and_round_trip_their_digest(
    name: str, collection: str, series: list[str], modalities: list[str]
) -> None:
    text = (
        f"name: {name}\nselect:\n  - collection: '{collection}'\n    modality: {modalities}\n"
        f"  - series: {series}\n"
    )
    spec = parse_spec(text)
    assert spec.select[0].modality == tuple(sorted(set(modalities)))
    assert spec.select[1].series == tuple(sorted(series))
    # Reordering and repeating list items never changes the digest.
    shuffled = parse_spec(
        f"name: {name}\nselect:\n  - collection: '{collection}'\n"
        f"    modality: {list(reversed(modalities)) + modalities[:1]}\n"
        f"  - series: {list(reversed(series))}\n"
    )
    assert shuffled.digest() == spec.digest()


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_spec_error(text: str) -> None:
    try:
        parse_spec(text)
    except SpecError as error:
        assert str(error)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "lockfiles").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_spec_in_lockfiles_is_valid(example: Path) -> None:
    spec = load_spec(example)
    assert spec.select and spec.digest().startswith("sha256:")


def test_there_are_example_specs() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize(
    "written", ["2020-01-05", "2020-1-5", "2020-01-05T10:00:00", "'2020-01-05'"]
)
def test_dates_in_every_usual_form(written: str) -> None:
    spec = parse_spec(f"name: x\nselect:\n  - collection: C\n    released_after: {written}\n")
    assert spec.select[0].released_after == dt.date(2020, 1, 5)

"""Folder layouts: names are safe whatever the archive says, and each layout places exactly
the paths it promises (against the emulator)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.errors import SpecError
from nbia_audit.fetch.layouts import (
    ImageFields,
    SeriesFields,
    parse_layout,
    sanitise,
    series_part,
    study_part,
)
from nbia_audit.fetch.run import fetch_dataset
from tests.support.fetch import FAST_SERIES, client_for, make_lock, tree

SPEC = CorpusSpec(seed=21, collections=2, patients=2, studies=1, series=2, images=2)


@given(st.text(max_size=300))
def test_sanitise_never_yields_a_separator_dot_dir_or_control(value: str) -> None:
    name = sanitise(value)
    assert name and name not in (".", "..")
    assert not set(name) & set('/\\:*?"<>|')
    assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in name)
    assert not name.startswith((".", " ")) and not name.endswith((".", " "))
    assert len(name.encode("utf-8")) <= 120


@given(
    st.text(min_size=0, max_size=200),
    st.text(min_size=0, max_size=200),
    st.text(min_size=0, max_size=200),
)
def test_every_layout_stays_inside_the_destination(
    collection: str, patient: str, description: str
) -> None:
    fields = SeriesFields(
        collection, patient, "1.2.3", "1.2.4", series_description=description, study_id=patient
    )
    image = ImageFields("1.2.5", instance_number=patient)
    paths = [parse_layout(name).path(fields, image) for name in ("classic", "descriptive", "flat")]
    try:  # a template may put two long values in one component: then it is a usage error
        paths.append(parse_layout("{collection}/{patient}-{study_id}/x").path(fields, image))
    except SpecError as error:
        assert "longer than 255 bytes" in str(error)
    for path in paths:
        assert not path.is_absolute()
        assert all(part not in ("", ".", "..") and "/" not in part for part in path.parts)
        assert all(len(part.encode("utf-8")) <= 255 for part in path.parts)


def test_hostile_metadata_cannot_climb_out() -> None:
    fields = SeriesFields("../../etc", "/abs", "..", "1.2.\x00x", series_description="a/b")
    path = parse_layout("classic").path(fields, ImageFields("../../passwd"))
    assert path == PurePosixPath("-..-etc/-abs/NA/1.2.-x/-..-passwd.dcm")


def test_descriptive_parts_follow_the_data_retriever() -> None:
    fields = SeriesFields(
        "C",
        "P",
        "1.2.840.12345678",
        "1.2.840.98765",
        series_number="3",
        series_description="Recon 2: LUNG/" + "x" * 80,
        study_date="19980830",
        study_description="",
        study_id="",
    )
    assert study_part(fields) == "08-30-1998-NA-NA-45678"
    assert series_part(fields) == "3.000000-Recon 2 LUNG" + "x" * 41 + "-98765"
    missing = SeriesFields("C", "P", "1.2.3.45678", "9.98765")
    assert study_part(missing) == "NA-NA-45678"
    assert series_part(missing) == "NA-98765"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{series_uid}", "S/1.9.dcm"),
        ("{collection}/{series_uid}/", "C/S/1.9.dcm"),
        ("{modality}/{series_uid}/{instance_number:>04}.dcm", "CT/S/0007.dcm"),
        ("{collection}/{sop_uid}", "C/1.9"),
        ("{study_date}_{series_date}/{series_number}-{body_part}", "1998-08-30_NA/3-CHEST/1.9.dcm"),
    ],
)
def test_templates_name_files_by_sop_unless_they_say_otherwise(
    template: str, expected: str
) -> None:
    fields = SeriesFields(
        "C", "P", "1.2", "S", "CT", "3", "", "CHEST", study_date="19980830", series_date=""
    )
    assert str(parse_layout(template).path(fields, ImageFields("1.9", "7"))) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "nonsense",
        "/{series_uid}",
        "{series_uid}/../{sop_uid}",
        "{nope}/x",
        "{series_uid!r}",
        "{series_uid:/>9}",
        "{series_uid}//{sop_uid}",
        "a\\{series_uid}",
        "{series_uid:d}",
        "{series_uid",
    ],
)
def test_bad_layouts_are_usage_errors(bad: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_layout(bad)
    assert "--layout" in str(caught.value)


def _clean(text: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9 .-]", "", text or "").strip() or "NA"


def expected_paths(emu: Emulator, layout: str) -> set[str]:
    """What each layout must produce, computed from the corpus without nbia_audit.fetch.layouts."""
    out = set()
    for series in emu.corpus.series:
        study = emu.corpus.study(series.study_uid)
        assert study is not None and study.study_date is not None
        for image in emu.corpus.images_of(series.series_uid):
            if layout == "classic":
                folder = f"{series.collection}/{series.patient_id}/{series.study_uid}/"
                folder += series.series_uid
            elif layout == "flat":
                folder = series.series_uid
            else:
                study_dir = (
                    f"{study.study_date:%m-%d-%Y}-{_clean(study.study_id)}-"
                    f"{_clean(study.description)[:53]}-{series.study_uid[-5:]}"
                )
                series_dir = (
                    f"{series.series_number}.000000-{_clean(series.description)[:53]}-"
                    f"{series.series_uid[-5:]}"
                )
                folder = f"{series.collection}/{series.patient_id}/{study_dir}/{series_dir}"
            out.add(f"{folder}/{image.sop_uid}.dcm")
    return out


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC) as running:
        yield running


@pytest.mark.parametrize("layout", ["classic", "descriptive", "flat"])
def test_each_layout_places_exactly_the_expected_paths(
    tmp_path: Path, emu: Emulator, layout: str
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    with client_for(emu.base_url) as client:
        report = fetch_dataset(lock, tmp_path / "d", client, layout=layout, retry=FAST_SERIES)
        again = fetch_dataset(lock, tmp_path / "d", client, layout=layout, retry=FAST_SERIES)
    assert report.ok and len(report.fetched) == len(emu.corpus.series)
    assert set(tree(tmp_path / "d")) == expected_paths(emu, layout)
    assert len(again.skipped) == len(emu.corpus.series) and not again.fetched


def test_template_with_instance_numbers_places_and_resumes(tmp_path: Path, emu: Emulator) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    template = "{collection}/{series_uid}/{instance_number:>03}.dcm"
    with client_for(emu.base_url) as client:
        report = fetch_dataset(lock, tmp_path / "d", client, layout=template, retry=FAST_SERIES)
        again = fetch_dataset(lock, tmp_path / "d", client, layout=template, retry=FAST_SERIES)
    expected = {
        f"{s.collection}/{s.series_uid}/{i.instance_number:03d}.dcm"
        for s in emu.corpus.series
        for i in emu.corpus.images_of(s.series_uid)
    }
    assert report.ok and set(tree(tmp_path / "d")) == expected
    assert report.layout == template
    assert len(again.skipped) == len(emu.corpus.series)


def test_layout_mapping_two_images_to_one_path_is_refused_before_placing(
    tmp_path: Path, emu: Emulator
) -> None:
    lock = make_lock(tmp_path / "lock", emu)
    emu.reset_request_log()
    with client_for(emu.base_url) as client, pytest.raises(SpecError) as caught:
        fetch_dataset(lock, tmp_path / "d", client, layout="{collection}/{sop_uid:.3}.dcm")
    assert "two images at one path" in str(caught.value)
    assert tree(tmp_path / "d") == {}
    assert emu.request_count == 0


def test_header_dependent_collision_fails_only_the_colliding_series(
    tmp_path: Path, emu: Emulator
) -> None:
    # Instance numbers repeat across the series of one patient: the second series of each
    # patient would overwrite the first one's files, so it is refused and nothing of it placed.
    lock = make_lock(tmp_path / "lock", emu)
    with client_for(emu.base_url) as client:
        report = fetch_dataset(
            lock,
            tmp_path / "d",
            client,
            layout="{patient}/{instance_number}.dcm",
            workers=1,
            retry=FAST_SERIES,
        )
    patients = {s.patient_id for s in emu.corpus.series}
    assert len(report.fetched) == len(patients) and len(report.failed) == len(patients)
    for outcome in report.failed:
        assert outcome.attempts == 1 and "would overwrite" in outcome.reasons[0]
    assert len(tree(tmp_path / "d")) == len(patients) * SPEC.images


def test_a_template_cannot_write_into_the_state_folder() -> None:
    with pytest.raises(SpecError, match="nbia-audit's own state"):
        parse_layout(".nbia-audit/{sop_uid}")


def test_paths_that_differ_only_in_case_collide(tmp_path: Path) -> None:
    # macOS and Windows file systems fold case: "A/x.dcm" and "a/x.dcm" are one file there.
    from nbia_audit.fetch.resume import PathClaims
    from nbia_audit.store.localstate import FileRecord

    within = PathClaims(tmp_path).claim(
        {"1.1": PurePosixPath("Series/x.dcm"), "1.2": PurePosixPath("series/X.dcm")}
    )
    assert within == ["images 1.1 and 1.2 would both be written to series/X.dcm"]
    (tmp_path / "Placed").mkdir()
    (tmp_path / "Placed" / "x.dcm").write_bytes(b"placed earlier")
    earlier = FileRecord("Placed/x.dcm", "1.1", "1", 0, 0, 0, 0, 0, "", "", "", "", "")
    claims = PathClaims(tmp_path, [earlier])
    assert claims.claim({"1.2": PurePosixPath("placed/X.dcm")}) == [
        "image 1.2 would overwrite image 1.1 at placed/X.dcm"
    ]
    assert claims.claim({"1.1": PurePosixPath("placed/X.dcm")}) == []  # its own path

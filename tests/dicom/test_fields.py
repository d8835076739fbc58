"""The header values a folder layout needs: read from a real DICOM file as written, empty
where the header lacks them, all empty (never an exception) when the header is unreadable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nbia_audit.dicom.fields import HeaderValues, read_header_values
from nbia_audit.emulator.dicomgen import DicomFields, encode_image, make_uid, template_for


def image(**changes: object) -> bytes:
    fields = DicomFields(
        template=template_for("CT"),
        sop_uid=make_uid("sop"),
        study_uid=make_uid("study"),
        series_uid=make_uid("series"),
        frame_uid=make_uid("frame"),
        patient_id="P-001",
        patient_name="Doe^Jane",
        patient_sex="F",
        patient_birth_date="19700101",
        patient_age="055Y",
        study_date="20240131",
        study_time="101500",
        study_id="S7",
        study_description="Chest  CT ",
        series_date="20240201",
        series_description="Axial 5mm",
        series_number=3,
        modality="CT",
        body_part="CHEST",
        manufacturer="ACME",
        model_name="X",
        software_versions="1",
        protocol_name="p",
        instance_number=12,
        acquisition_number=1,
    )
    return encode_image(dataclasses.replace(fields, **changes))  # type: ignore[arg-type]


def test_the_values_are_read_as_the_file_holds_them(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(image())
    assert read_header_values(path) == HeaderValues(
        study_date="20240131",
        series_date="20240201",
        modality="CT",
        study_description="Chest  CT",  # padding stripped, inner spaces kept
        series_description="Axial 5mm",
        study_id="S7",
        series_number="3",
        instance_number="12",
    )


def test_absent_values_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(image(study_date=None, study_description=None, instance_number=None))
    values = read_header_values(path)
    assert (values.study_date, values.study_description, values.instance_number) == ("", "", "")
    assert values.modality == "CT"


def test_an_unreadable_header_gives_empty_values_not_an_error(tmp_path: Path) -> None:
    garbage = tmp_path / "not.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    assert read_header_values(garbage) == HeaderValues()
    assert read_header_values(tmp_path / "missing.dcm") == HeaderValues()

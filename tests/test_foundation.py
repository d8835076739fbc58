"""The foundation's acceptance check, with tools that share no code with nbia-audit.

For every series of the emulator: download ``getImageWithMD5Hash`` with plain ``curl``,
``unzip`` it and ``md5sum`` the files. The sums must equal ``md5hashes.csv``, and the NBIA
algorithm (hashing.py) over those strings must equal the emulator's ``getMD5Hierarchy``
for the series, its study, its patient and, after the nightly step, its collection.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.merkle import combine, series_hash

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("curl", "unzip", "md5sum")),
    reason="needs curl, unzip and md5sum on PATH",
)

SPEC = CorpusSpec(seed=3, collections=2, patients=2, studies=2, series=2, images=3)


def curl(*args: str) -> str:
    out = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def hierarchy(base_url: str, **form: str) -> str:
    fields = [arg for key, value in form.items() for arg in ("--data-urlencode", f"{key}={value}")]
    return curl("-X", "POST", *fields, f"{base_url}/v4/getMD5Hierarchy")


def download_and_sum(base_url: str, series_uid: str, workdir: Path) -> dict[str, str]:
    """curl + unzip + md5sum; returns {member name: md5} and checks it against the CSV."""
    folder = workdir / series_uid
    folder.mkdir()
    zip_path = workdir / f"{series_uid}.zip"
    curl("-o", str(zip_path), f"{base_url}/v4/getImageWithMD5Hash?SeriesInstanceUID={series_uid}")
    subprocess.run(["unzip", "-q", str(zip_path), "-d", str(folder)], check=True)
    images = sorted(p.name for p in folder.iterdir() if p.name != "md5hashes.csv")
    sums = subprocess.run(
        ["md5sum", *images], cwd=folder, check=True, capture_output=True, text=True
    ).stdout
    computed = {line.split()[1]: line.split()[0] for line in sums.splitlines()}
    with open(folder / "md5hashes.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Filename", "MD5Hash"]
    published = dict(rows[1:])
    assert computed == published, series_uid
    return published


def test_curl_unzip_md5sum_match_csv_and_every_hierarchy_level(tmp_path: Path) -> None:
    with Emulator.from_spec(SPEC) as emu:
        emu.run_nightly_job()
        url = emu.base_url
        series_hashes: dict[str, str] = {}
        studies: defaultdict[str, list[str]] = defaultdict(list)
        patients: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        for series in emu.corpus.series:
            published = download_and_sum(url, series.series_uid, tmp_path)
            assert len(published) == len(emu.corpus.images_of(series.series_uid))
            ours = series_hash(published.values())
            assert ours == hierarchy(url, SeriesInstanceUID=series.series_uid)
            series_hashes[series.series_uid] = ours
            studies[series.study_uid].append(ours)
            patients[(series.collection, series.patient_id)].add(series.study_uid)
        study_hashes = {uid: combine(h) for uid, h in studies.items()}
        for uid, value in study_hashes.items():
            assert value == hierarchy(url, StudyInstanceUID=uid)
        per_collection: defaultdict[str, list[str]] = defaultdict(list)
        for (collection, patient), study_uids in patients.items():
            value = combine(study_hashes[s] for s in study_uids)
            assert value == hierarchy(url, Collection=collection, PatientID=patient)
            per_collection[collection].append(value)
        for collection, values in per_collection.items():
            assert combine(values) == hierarchy(url, Collection=collection)

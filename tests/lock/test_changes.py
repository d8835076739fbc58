"""One comparison of a lock with upstream: `lock --check`, re-lock and `drift` agree.

The property: for any locked series set and any upstream (series added, removed, changed in
content, changed in any listed field, or changed only in ways the lock does not record),
the reasons ``lock --check`` gives, the changes an upgrading re-lock makes and the findings
``drift`` reports say the same thing, and that is exactly what was changed. End to end, a
description changed upstream makes ``lock --check`` exit 1 naming it, and ``drift`` report it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.archive.view import ArchiveView
from nbia_audit.cli.common import ExitCode
from nbia_audit.cli.main import cli
from nbia_audit.client import NbiaClient
from nbia_audit.client.records import SeriesInfo
from nbia_audit.drift.diff import SeriesMeta, SeriesView, Upstream, diff, views_of
from nbia_audit.drift.run import check_drift
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.findings import Finding
from nbia_audit.lock.changes import FIELDS, changes_upstream, compare, states_of
from nbia_audit.lock.pin import locked_series
from nbia_audit.lock.run import check_lock, lock_dataset, stale_reasons
from nbia_audit.models import LockedSeries

Fact = tuple[str, ...]

# What a change of each SeriesInfo attribute is called, written out here rather than taken
# from lock/changes.py, so a field the comparison forgets is a failure, not an agreement.
LABELS = {
    "collection": "collection",
    "patient_id": "patient",
    "study_uid": "study",
    "modality": "modality",
    "body_part": "body part",
    "manufacturer": "manufacturer",
    "description": "description",
    "license_name": "license",
    "license_url": "license",
    "doi": "DOI",
    "released": "release date",
    "image_count": "image count",
    "file_size": "size in bytes",
}
FROM_CONTENT = {"image count", "size in bytes"}
NOON = dt.datetime(2019, 4, 5, 12, 0)

optional_text = st.one_of(st.none(), st.sampled_from(["", "CT", "MR", "A b", "x"]))
infos = st.builds(
    SeriesInfo,
    series_uid=st.just(""),
    collection=st.sampled_from(["C1", "C2"]),
    patient_id=st.sampled_from(["P1", "P2"]),
    study_uid=st.sampled_from(["1.1", "1.2"]),
    modality=optional_text,
    description=optional_text,
    series_number=st.one_of(st.none(), st.integers(1, 3)),
    body_part=optional_text,
    manufacturer=optional_text,
    image_count=st.one_of(st.none(), st.integers(1, 4)),
    file_size=st.one_of(st.none(), st.integers(1, 9_999)),
    released=st.one_of(st.none(), st.just(NOON)),
    max_submission=st.one_of(st.none(), st.just(NOON)),
    license_name=optional_text,
    license_url=st.one_of(st.none(), st.sampled_from(["", "https://l/1"])),
    doi=optional_text,
)
hashes = st.sampled_from(["a" * 32, "b" * 32, "c" * 32])


def _changed(name: str, value: object) -> object:
    """Another value of the attribute ``name``, different in the lock's text form too."""
    if name == "released":
        return value + dt.timedelta(days=1) if isinstance(value, dt.datetime) else NOON
    if name in ("image_count", "file_size"):
        return value + 1 if isinstance(value, int) else 1
    return f"{value or ''}-new"


def _unrecorded(info: SeriesInfo, name: str) -> SeriesInfo:
    """A change the lock does not record: None for "" (or back), the time of day, the
    series number or submission time (not compared)."""
    value = getattr(info, name)
    if name == "released":
        return dataclasses.replace(info, released=value and value.replace(hour=13))
    if name in ("series_number", "max_submission"):
        later = value + 1 if isinstance(value, int) else NOON + dt.timedelta(days=2)
        return dataclasses.replace(info, **{name: later})
    if isinstance(value, str | None) and not value:
        return dataclasses.replace(info, **{name: "" if value is None else None})
    return info


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[LockedSeries], dict[str, SeriesInfo], dict[str, str], set[Fact]]:
    """A series-only lock, what upstream serves now, and the facts that changed."""
    uids = sorted(draw(st.sets(st.sampled_from([f"1.2.{i}" for i in range(8)]), max_size=6)))
    locked: list[LockedSeries] = []
    listed: dict[str, SeriesInfo] = {}
    current: dict[str, str] = {}
    facts: set[Fact] = set()
    for uid in uids:
        old = dataclasses.replace(draw(infos), series_uid=uid)
        old_hash = draw(hashes)
        locked.append(locked_series(old, old_hash, False))
        if draw(st.integers(0, 5)) == 0:
            facts.add(("removed", uid))
            continue
        new = old
        for name in draw(st.sets(st.sampled_from(sorted(LABELS)), max_size=3)):
            new = dataclasses.replace(new, **{name: _changed(name, getattr(new, name))})
        noise = ["released", "series_number", "max_submission", "description", "modality"]
        for name in draw(st.sets(st.sampled_from(noise), max_size=2)):
            new = _unrecorded(new, name)
        new_hash = draw(hashes)
        listed[uid], current[uid] = new, new_hash
        content = new_hash != old_hash
        if content:
            facts.add(("content", uid))
        facts |= {
            ("field", uid, label)
            for name, label in LABELS.items()
            if _text(getattr(old, name)) != _text(getattr(new, name))
            and not (content and label in FROM_CONTENT)
        }
    for uid in draw(st.sets(st.sampled_from([f"1.3.{i}" for i in range(4)]), max_size=3)):
        listed[uid] = dataclasses.replace(draw(infos), series_uid=uid)
        current[uid] = draw(hashes)
        facts.add(("added", uid))
    return locked, listed, current, facts


def _text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return "" if value is None else str(value)


REASON = re.compile(
    r"series (?:(added) upstream|no longer (selected) or served|changed upstream \(hash "
    r"(differs)\)|metadata changed upstream \((.*)\)): (\S+)$"
)


def reason_facts(reasons: Iterable[str]) -> set[Fact]:
    out: set[Fact] = set()
    for reason in reasons:
        match = REASON.match(reason)
        assert match, reason
        added, removed, content, fields, uid = match.groups()
        if fields:
            out |= {("field", uid, label) for label in fields.split(", ")}
        else:
            out.add(("added" if added else "removed" if removed else "content", uid))
    return out


def drift_facts(findings: Iterable[Finding]) -> set[Fact]:
    kinds = {"series-added": "added", "series-removed": "removed", "image-changed": "content"}
    return {
        ("field", f.series_uid, f.detail)
        if f.kind == "metadata-changed"
        else (kinds[f.kind], f.series_uid)
        for f in findings
    }


@settings(deadline=None, max_examples=300)
@given(scenarios())
def test_lock_check_relock_and_drift_report_the_same_changes(
    scenario: tuple[list[LockedSeries], dict[str, SeriesInfo], dict[str, str], set[Fact]],
) -> None:
    locked, listed, current, facts = scenario
    # lock --check and a re-lock without --upgrade (its pending changes) ask this:
    check = changes_upstream(locked, listed, current)
    # lock --upgrade re-pins every series from the listing and compares the two locks:
    upgraded = (locked_series(listed[u], h, False) for u, h in current.items())
    relock = compare(states_of(locked), states_of(upgraded))
    # drift, on the same lock and the same answers:
    views = {v.series_uid: v for v in views_of(locked, {})}
    upstream = Upstream(
        selected={u: SeriesView(u, SeriesMeta.from_info(i), current[u]) for u, i in listed.items()},
        removed=frozenset(views) - set(listed),
    )
    found = diff(views, upstream)

    assert stale_reasons(check) == stale_reasons(relock)
    assert reason_facts(stale_reasons(check)) == facts
    assert drift_facts(found) == facts
    assert bool(check) == bool(facts) == bool(found)


def test_the_compared_fields_are_the_field_table() -> None:
    assert [f.name for f in dataclasses.fields(SeriesMeta)] == [f.name for f in FIELDS]
    assert {f.label for f in FIELDS} == set(LABELS.values())


SPEC = CorpusSpec(seed=11, collections=2, patients=3, studies=2, series=2, images=3)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator.from_spec(SPEC) as running:
        yield running


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("description", "description"),
        ("body_part", "body part"),
        ("manufacturer", "manufacturer"),
        ("license_url", "license"),
    ],
)
def test_a_field_changed_upstream_is_stale_for_lock_check_and_drift_alike(
    tmp_path: Path, emu: Emulator, field: str, label: str
) -> None:
    collection = sorted(c.name for c in emu.corpus.collections)[0]
    spec = tmp_path / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {collection}\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["lock", str(spec), "--quiet"]).exit_code == ExitCode.CLEAN
    target = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)[0]
    series = emu.corpus.series_by_uid(target)
    assert series is not None
    emu.corpus.put_series(
        dataclasses.replace(series, **{field: f"{getattr(series, field) or ''} (revised)"})
    )

    checked = runner.invoke(cli, ["lock", "--check", str(spec)])
    assert checked.exit_code == ExitCode.FINDINGS, checked.output
    assert f"series metadata changed upstream ({label}): {target}" in checked.stdout
    relocked = runner.invoke(cli, ["lock", str(spec)])
    assert relocked.exit_code == ExitCode.CLEAN, relocked.output
    assert f"m series {target} ({label})" in relocked.stdout

    with NbiaClient(emu.base_url) as client:
        report = check_drift(spec.with_suffix(".lock"), ArchiveView(client))
    assert {(f.kind, f.series_uid, f.detail) for f in report.findings} == {
        ("metadata-changed", target, label)
    }


def test_an_upgrade_takes_a_metadata_change_and_is_then_up_to_date(
    tmp_path: Path, emu: Emulator
) -> None:
    collection = sorted(c.name for c in emu.corpus.collections)[0]
    spec = tmp_path / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {collection}\n")
    with NbiaClient(emu.base_url) as client:
        archive = ArchiveView(client)
        first = lock_dataset(spec, archive)
        target = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)[0]
        series = emu.corpus.series_by_uid(target)
        assert series is not None
        emu.corpus.put_series(dataclasses.replace(series, description="revised"))
        kept = lock_dataset(spec, archive)
        # Without --upgrade the pins (metadata included) stay: nothing is written.
        assert not kept.written and kept.pending.metadata == ((target, ("description",)),)
        upgraded = lock_dataset(spec, archive, upgrade=True)
        assert upgraded.written and upgraded.changes.metadata == ((target, ("description",)),)
        # The text lock records no description: only its metadata digest moves.
        assert upgraded.header.root_digest == first.header.root_digest
        assert upgraded.header.metadata_digest != first.header.metadata_digest
        assert not check_lock(spec, archive).stale

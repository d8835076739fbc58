"""The words of the reports: every finding kind, status and lock problem kind is an enum
member whose meaning is documented, every documented one is a member, and the enums render
exactly the words the bare strings did."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.findings import (
    AuditReport,
    FetchStatus,
    Finding,
    FindingKind,
    ProblemKind,
    SeriesState,
    SeriesStatus,
)
from nbia_audit.lock.pin import image_problems
from nbia_audit.report.render import FORMATS, render

DOCS = Path(__file__).resolve().parents[1] / "docs"
# A kind is a lowercase hyphenated word in backticks: `series-added`, not `lock` or `kind`.
KIND_WORD = re.compile(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`")


def section(doc: str, heading: str) -> str:
    """The text of ``doc`` from ``heading`` to the next heading of its level or above."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    start = text.index(heading + "\n") + len(heading)
    level = len(heading.split(" ")[0])
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, start)
    return text[start : end.start() if end else None]


def table_kinds(doc: str) -> set[str]:
    """The first cell of every row of the Findings table of ``doc``."""
    rows = re.findall(r"^\| `([^`]+)` \|", section(doc, "## Findings"), re.MULTILINE)
    return set(rows)


def values(enum: type[FindingKind] | type[ProblemKind]) -> set[str]:
    return {member.value for member in enum}


def test_every_finding_kind_has_its_meaning_in_a_findings_table_and_no_other_is_there() -> None:
    documented = table_kinds("verify.md") | table_kinds("drift.md")
    assert documented == values(FindingKind)
    assert not table_kinds("verify.md") & table_kinds("drift.md")


def test_the_report_schema_lists_exactly_the_finding_kinds() -> None:
    kinds = section("report-schema.md", "### `findings[]`").split("\nKinds:\n", 1)[1]
    assert set(KIND_WORD.findall(kinds) + re.findall(r"`([a-z]+)`", kinds)) == values(FindingKind)


def test_the_report_schema_lists_exactly_the_series_statuses() -> None:
    row = next(
        line
        for line in section("report-schema.md", "### `series[]`").splitlines()
        if line.startswith("| `status` |")
    )
    assert set(re.findall(r"`([a-z-]+)`", row.split("|")[3])) == {s.value for s in SeriesState}


def test_fetch_documents_exactly_its_series_statuses() -> None:
    text = (DOCS / "fetch.md").read_text(encoding="utf-8")
    said = re.search(r"`status` is ((?:`[a-z]+`(?:, | or )?)+)", text)
    assert said is not None
    assert set(re.findall(r"`([a-z]+)`", said.group(1))) == {s.value for s in FetchStatus}


def problems_row() -> str:
    text = (DOCS / "lock-format.md").read_text(encoding="utf-8")
    return next(line for line in text.splitlines() if line.startswith("| `problems` |"))


def test_lock_format_documents_exactly_the_problem_kinds() -> None:
    assert set(KIND_WORD.findall(problems_row().split("|")[3])) == values(ProblemKind)


def test_the_serious_problem_kinds_are_those_the_lock_format_says_exit_1() -> None:
    # "... `short-archive-md5`, `missing-archive-md5` (...). `lock` exits 1 when any but the
    # last two occur." Everything named after that sentence is serious as well.
    meaning = problems_row().split("|")[3]
    before, after = meaning.split("exits 1 when any but the last two occur", 1)
    listed = KIND_WORD.findall(before)
    facts, serious = set(listed[-2:]), set(listed[:-2] + KIND_WORD.findall(after))
    assert {k.value for k in ProblemKind if not k.serious} == facts
    assert {k.value for k in ProblemKind if k.serious} == serious


def test_a_lock_result_is_serious_exactly_when_a_problem_kind_is(tmp_path: Path) -> None:
    from nbia_audit.archive.view import ArchiveView
    from nbia_audit.client import NbiaClient
    from nbia_audit.lock.run import lock_dataset

    with Emulator.from_spec(CorpusSpec(seed=3, collections=1, patients=1, series=1)) as emu:
        target = emu.corpus.images_of(emu.corpus.series[0].series_uid)[0]
        emu.set_stored_md5(target.sop_uid, None)  # a fact of old data: not serious
        spec = tmp_path / "dataset.yaml"
        collection = emu.corpus.collections[0].name
        spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {collection}\n")
        with NbiaClient(emu.base_url) as client:
            result = lock_dataset(spec, ArchiveView(client))
    assert [p.kind for p in result.problems] == [ProblemKind.MISSING_ARCHIVE_MD5]
    assert not result.has_serious_problems
    # The same run had the archive also given no hash for the series: that is serious.
    empty = image_problems(target.series_uid, None, "", None)
    assert [p.kind for p in empty] == [ProblemKind.EMPTY_SERIES_HASH]
    worse = dataclasses.replace(result, problems=(*result.problems, *empty))
    assert worse.has_serious_problems


def report_with(kinds: list[str], statuses: list[str]) -> AuditReport:
    return AuditReport(
        command="verify",
        lock_path="dataset.lock",
        root_digest="sha256:" + "0" * 64,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        findings=tuple(
            Finding(kind, series_uid=f"1.{i}", detail="d") for i, kind in enumerate(kinds)
        ),
        series=tuple(
            SeriesStatus(f"1.{i}", status, "how", "C") for i, status in enumerate(statuses)
        ),
        complete=True,
        facts={"level": "full"},
        proof="content",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_members_render_byte_for_byte_as_the_bare_words(fmt: str) -> None:
    kinds, statuses = list(FindingKind), list(SeriesState)
    as_enum = report_with(list(kinds), list(statuses))
    as_words = report_with([k.value for k in kinds], [s.value for s in statuses])
    assert render(as_enum, fmt) == render(as_words, fmt)
    assert as_enum.counts() == as_words.counts()
    assert all(type(k) is str for k in as_words.counts())

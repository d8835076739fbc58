"""docs/report-schema.md documents exactly what verify's JSON report holds."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.report.render import render_json
from nbia_audit.shards import Shard
from nbia_audit.verify.run import verify_copy
from nbia_audit.verify.shards import merge_verify, verify_shard
from tests.support.verify import backdate, make_lock

DOC = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"
SPEC = CorpusSpec(seed=21, collections=1, patients=1, studies=1, series=2, images=2)


def documented_keys(heading: str) -> set[str]:
    """The backquoted keys in the first column of the tables under ``heading``."""
    text = DOC.read_text(encoding="utf-8")
    section = re.split(r"\n#{2,3} ", text.split(heading, 1)[1], maxsplit=1)[0]
    keys: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    return keys


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("schema")
    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(base / "lock", emu)
        root = base / "copy"
        emu.write_corpus(root)
        (root / "notes.txt").write_text("x")
        backdate(root)  # old enough for stat to trust what the first pass records
        yield lock, root


def reports(lock: Path, root: Path) -> Iterator[dict[str, object]]:
    yield json.loads(render_json(verify_copy(lock, root)))
    yield json.loads(render_json(verify_copy(lock, root, sample=0.5, seed=1, ignore=["x"])))
    yield json.loads(render_json(verify_copy(lock, root, level="stat")))
    (root / "notes.txt").unlink()  # now clean: a second stat pass comes from the memo
    assert verify_copy(lock, root, level="stat").clean
    yield json.loads(render_json(verify_copy(lock, root, level="stat")))
    run_dir = root.parent / "shard-run"  # verify --shard K/N, then --merge (verify.shards)
    for index in (1, 2):
        verify_shard(lock, root, Shard(index, 2), run_dir)
    yield json.loads(render_json(merge_verify(lock, root, run_dir)))
    alone = root.parent / "alone" / "dataset.lock"
    alone.parent.mkdir(exist_ok=True)
    shutil.copy2(lock, alone)
    yield json.loads(render_json(verify_copy(alone, root)))


def test_every_fact_and_field_is_documented(copy: tuple[Path, Path]) -> None:
    facts_documented = documented_keys("## `facts` of `verify`")
    top_documented = documented_keys("## Top level")
    seen_facts: set[str] = set()
    for document in reports(*copy):
        assert set(document) == top_documented
        assert document["schema"] == 1
        facts = document["facts"]
        assert isinstance(facts, dict)
        assert set(facts) <= facts_documented, set(facts) - facts_documented
        seen_facts |= set(facts)
        for finding in document["findings"]:  # type: ignore[attr-defined]
            assert set(finding) <= documented_keys("### `findings[]`")
        for status in document["series"]:  # type: ignore[attr-defined]
            assert set(status) == documented_keys("### `series[]`")
    assert seen_facts == facts_documented  # nothing documented that never appears


def test_every_finding_kind_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in ("missing", "modified", "unexpected", "duplicate", "unreadable"):
        assert f"`{kind}`" in text

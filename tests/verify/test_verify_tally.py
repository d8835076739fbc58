"""The tally (interface I2): what the walk found lives in a SQLite file, read back in a
canonical order, and another process's tally can be unioned into it (a shard merge)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.errors import StoreError
from nbia_audit.findings import Finding, FindingKind
from nbia_audit.verify.judge import HOW_MD5, HOW_STAT
from nbia_audit.verify.tally import Seen, Tally

ODD = "d/\udcff.dcm"  # a name that is not UTF-8, as os.scandir hands it over


def seen(rel: str, sop: str = "1.2.3", series: str = "1.2", md5: str = "a" * 32) -> Seen:
    return Seen(rel, sop, series, md5, HOW_MD5)


def test_the_whole_state_lives_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tally.db"
    with Tally.create(path) as tally:
        tally.place(seen("b.dcm"))
        tally.place(Seen(ODD, "1.2.4", "1.2", "b" * 32, HOW_STAT, "2026-01-02T00:00:00Z"))
        tally.strays.append(Finding(FindingKind.UNEXPECTED, path=ODD, detail="not DICOM"))
        tally.blocked_units.update(("1.2.9", "1.2"))
        tally.unattributed_blocked += 2
        tally.complete = False
    again = Tally.open(path)
    try:
        assert again.copies("1.2.3") == [seen("b.dcm")]
        assert again.copies("1.2.4")[0].rel == ODD and again.copies("1.2.4")[0].how == HOW_STAT
        assert list(again.strays) == [Finding(FindingKind.UNEXPECTED, path=ODD, detail="not DICOM")]
        assert "1.2.9" in again.blocked_units and "1.2" in again.blocked_units
        assert "1.2.3" not in again.blocked_units
        assert again.unattributed_blocked == 2 and again.complete is False
    finally:
        again.close()


def test_copies_are_ordered_by_path_never_by_arrival() -> None:
    with Tally() as tally:
        for rel in ("z/x.dcm", "a/y.dcm", "m.dcm"):
            tally.place(seen(rel))
        assert [c.rel for c in tally.copies("1.2.3")] == ["a/y.dcm", "m.dcm", "z/x.dcm"]
        by_series = tally.copies_in_series("1.2")
        assert [c.rel for c in by_series["1.2.3"]] == ["a/y.dcm", "m.dcm", "z/x.dcm"]
        # The first copy by path decides which series a hash-only image is counted in.
        tally.place(seen("0-first.dcm", sop="9.9", series="7.7"))
        tally.place(seen("b-later.dcm", sop="9.9", series="8.8"))
        assert tally.images_first_seen_in("7.7") == ["9.9"]
        assert tally.images_first_seen_in("8.8") == []
        assert list(tally.sops()) == list(tally.first) == ["1.2.3", "9.9"]
        assert [(p.sop, p.rel) for p in tally.placements()] == [
            ("1.2.3", "a/y.dcm"), ("1.2.3", "m.dcm"), ("1.2.3", "z/x.dcm"),
            ("9.9", "0-first.dcm"), ("9.9", "b-later.dcm"),
        ]  # fmt: skip


def test_a_temporary_tally_removes_its_folder() -> None:
    tally = Tally()
    folder = tally.path.parent
    tally.place(seen("a.dcm"))
    assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"
    tally.close()
    assert not folder.exists()
    tally.close()  # twice is harmless


def test_open_and_absorb_refuse_what_is_not_a_tally(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no verify tally"):
        Tally.open(tmp_path / "absent.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Tally.open(junk)
    with Tally() as tally, pytest.raises(StoreError, match="no verify tally"):
        tally.absorb(tmp_path / "absent.db")


_PLACEMENTS = st.lists(
    st.tuples(
        st.sampled_from(["a/1.dcm", "b/1.dcm", "b/2.dcm", "c.dcm", "d/e/f.dcm", ODD]),
        st.sampled_from(["1.1", "1.2", "1.3"]),
        st.sampled_from(["9.1", "9.2"]),
    ),
    unique_by=lambda p: (p[0], p[1]),
    max_size=12,
)


def _state(tally: Tally) -> tuple[object, ...]:
    copies = {sop: tally.copies(sop) for sop in ("1.1", "1.2", "1.3")}
    firsts = {s: tally.images_first_seen_in(s) for s in ("9.1", "9.2")}
    return (
        copies,
        firsts,
        sorted(tally.strays),
        sorted(tally.blocked_units),
        tally.unattributed_blocked,
        tally.complete,
    )


@settings(deadline=None, max_examples=40)
@given(placements=_PLACEMENTS, cut=st.integers(0, 12), shards=st.integers(1, 4))
def test_absorbed_shards_equal_one_tally(
    tmp_path_factory: pytest.TempPathFactory,
    placements: list[tuple[str, str, str]],
    cut: int,
    shards: int,
) -> None:
    """Whatever the split and the order, the union of shard tallies is the one tally."""
    folder = tmp_path_factory.mktemp("shards")
    whole = Tally()
    parts = [Tally.create(folder / f"{k}.db") for k in range(shards)]
    try:
        for index, (rel, sop, series) in enumerate(placements):
            item = seen(rel, sop, series)
            whole.place(item)
            parts[(index + cut) % shards].place(item)
        stray = Finding(FindingKind.UNREADABLE, path="x", detail="cannot be read")
        whole.strays.append(stray)
        parts[cut % shards].strays.append(stray)
        whole.blocked_units.add("1.3")
        parts[-1].blocked_units.add("1.3")
        whole.unattributed_blocked = shards
        for part in parts:
            part.unattributed_blocked = 1
        whole.complete = cut % 2 == 0
        parts[0].complete = cut % 2 == 0
        for part in parts:
            part.close()
        merged = Tally()
        try:
            for k in reversed(range(shards)):  # any order of arrival
                merged.absorb(folder / f"{k}.db")
            assert _state(merged) == _state(whole)
        finally:
            merged.close()
    finally:
        whole.close()
        for k in range(shards):
            os.remove(folder / f"{k}.db")

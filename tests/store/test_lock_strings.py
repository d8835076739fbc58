"""Any archive string round-trips through the text lock and the lock database.

The archive's JSON can carry characters outside the BMP and even lone UTF-16 surrogates (in a
DOI, a license name, a description). The text lock must stay TOML that a standard reader
(tomllib) accepts, and reading the pair back must give the very same strings.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbia_audit.store.reader import read_lock
from nbia_audit.store.storable import ESCAPE, from_storable, to_storable
from nbia_audit.store.textlock import _toml_str, read_text_lock
from tests.support.lock_tools import rewrite_pair, write_pair

# Every code point, surrogates included (hypothesis leaves category Cs out by default).
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=40)
HOSTILE = st.sampled_from(
    ["\ud835", "\udd38", "\U0001d538", "\ud835\udd38", ESCAPE, ESCAPE + "\U00100000", '"\\\n\x00']
)


@given(st.one_of(ANY_TEXT, st.lists(HOSTILE | ANY_TEXT, max_size=5).map("".join)))
def test_any_string_round_trips_through_a_standard_toml_reader(value: str) -> None:
    written = _toml_str(value)
    assert written.isascii()
    parsed = tomllib.loads(f"v = {written}\n")["v"]
    assert from_storable(parsed) == value


@given(ANY_TEXT)
def test_the_storable_escape_is_reversible_and_sqlite_safe(value: str) -> None:
    stored = to_storable(value)
    stored.encode("utf-8")  # no lone surrogate left: SQLite (UTF-8) can hold it
    assert from_storable(stored) == value


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(HOSTILE | ANY_TEXT, min_size=1, max_size=4).map("".join))
def test_a_lock_pair_with_odd_archive_strings_reads_back_exactly(
    tmp_path: Path, value: str
) -> None:
    lock = tmp_path / f"{abs(hash(value))}" / "dataset.lock"
    write_pair(lock, [("1.2.1", "", ())])
    rewrite_pair(
        lock,
        lambda s: dataclasses.replace(
            s, doi=value, license_name=value, description=value, modality=value
        ),
    )
    tomllib.loads(lock.read_text(encoding="utf-8"))  # any TOML reader accepts the lock
    series = read_lock(lock).series[0]
    assert (series.doi, series.license_name, series.description, series.modality) == (value,) * 4
    assert read_text_lock(lock).series[0].doi == value


def test_an_astral_character_is_one_toml_escape_not_a_surrogate_pair() -> None:
    assert _toml_str("\U0001d538") == '"\\U0001D538"'


def _rendered(values: list[str]) -> str:
    from nbia_audit.models import LOCK_FORMAT, LockHeader
    from nbia_audit.store.textlock import render_text_lock, root_digest
    from tests.support.lock_tools import locked_series

    series = [
        dataclasses.replace(locked_series(f"1.2.{i}", "a" * 32), doi=v, collection=v)
        for i, v in enumerate(values)
    ]
    header = LockHeader(
        LOCK_FORMAT, "t", "sha256:0", "s", "u", "v4", "0", "2026", root_digest(series),
        len(series), 0, 0, False, "sha256:1",
    )  # fmt: skip
    return render_text_lock(header, "{}", series)


@settings(max_examples=150, deadline=None)
@given(st.lists(HOSTILE | ANY_TEXT, max_size=4), st.data())
def test_the_fast_series_reader_agrees_with_tomllib_or_defers(
    values: list[str], data: st.DataObject
) -> None:
    """Read as written, or after any one-character edit: the line reader and tomllib agree."""
    from nbia_audit.store.textlock import _parse_as_written

    text = _rendered(values)
    assert _parse_as_written(text) == tomllib.loads(text)
    at = data.draw(st.integers(0, len(text) - 1))
    edited = text[:at] + data.draw(ANY_CHAR.filter(lambda c: c != "\x00")) + text[at + 1 :]
    fast = _parse_as_written(edited)
    if fast is not None:
        assert fast == tomllib.loads(edited)

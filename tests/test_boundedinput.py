"""Untrusted files read within bounds, and values quoted in errors as short excerpts.

The hostile cases through the CLI (a FIFO, /dev/zero, a billion laughs) are in
tests/spec/test_bounds.py; here are the exact edges of the two functions themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nbia_audit.boundedinput import EXCERPT_CHARS, excerpt, read_bounded
from nbia_audit.errors import SpecError


def test_a_file_of_exactly_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, limit=100, what="spec") == b"x" * 100


def test_one_byte_over_the_limit_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"x" * 101)
    with pytest.raises(SpecError, match="the spec is larger than 100 bytes") as refused:
        read_bounded(path, limit=100, what="spec")
    assert str(path) in str(refused.value)


def test_a_large_limit_is_shown_in_mebibytes(tmp_path: Path) -> None:
    path = tmp_path / "m.tcia"
    path.write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(SpecError, match="the manifest is larger than 1 MiB"):
        read_bounded(path, limit=1 << 20, what="manifest")


def test_a_folder_and_a_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory, not a spec file"):
        read_bounded(tmp_path, limit=10, what="spec")
    with pytest.raises(SpecError, match="no such file"):
        read_bounded(tmp_path / "gone.yaml", limit=10, what="spec")


def test_an_excerpt_of_a_huge_string_is_short() -> None:
    shown = excerpt("A" * 10_000_000)
    assert len(shown) <= EXCERPT_CHARS + 5 and shown.startswith("'AAA")


def test_yaml_lists_and_mappings_are_cut_like_builtin_ones() -> None:
    # The YAML loader hands back subclasses; reprlib would print those in full.
    class YamlList(list[object]):
        pass

    class YamlDict(dict[str, object]):
        pass

    value = YamlDict(select=YamlList(["v" * 1000] * 1000))
    shown = excerpt(value)
    assert shown.count("'vvv") == 4 and shown.endswith(", ...]}")  # the first few items
    assert len(shown) < 5 * EXCERPT_CHARS


def test_shared_structure_does_not_multiply_the_cost() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for level in range(8):
        name, previous = chr(98 + level), chr(97 + level)
        text += f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
    value = yaml.safe_load(text)  # 9**9 leaves if expanded
    assert len(excerpt(value)) < 20 * EXCERPT_CHARS

"""The split of a lock into shards: whole series, each in exactly one shard, balanced, stable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.shards import Shard, assign_series, shard_of_path

uids = st.text(alphabet="0123456789.", min_size=1, max_size=12)
series_lists = st.lists(
    st.tuples(uids, st.integers(0, 10**9)), max_size=60, unique_by=lambda pair: pair[0]
)
counts = st.integers(1, 9)


@given(series_lists, counts)
def test_every_series_is_in_exactly_one_existing_shard(
    series: list[tuple[str, int]], count: int
) -> None:
    owner = assign_series(series, count)
    assert set(owner) == {uid for uid, _ in series}
    assert all(1 <= index <= count for index in owner.values())


@given(series_lists, counts, st.randoms(use_true_random=False))
def test_the_split_does_not_depend_on_the_order_given(
    series: list[tuple[str, int]], count: int, rng: object
) -> None:
    shuffled = list(series)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert assign_series(shuffled, count) == assign_series(series, count)


@given(series_lists, counts)
def test_no_shard_exceeds_the_ideal_by_more_than_the_largest_series(
    series: list[tuple[str, int]], count: int
) -> None:
    owner = assign_series(series, count)
    loads = dict.fromkeys(range(1, count + 1), 0)
    for uid, size in series:
        loads[owner[uid]] += size
    largest = max((size for _, size in series), default=0)
    ideal = sum(size for _, size in series) / count
    assert max(loads.values()) <= ideal + largest


def test_equal_series_spread_round_robin_by_uid() -> None:
    owner = assign_series([(f"1.{n}", 10) for n in range(6)], 3)
    assert sorted(owner.values()) == [1, 1, 2, 2, 3, 3]
    assert [owner[f"1.{n}"] for n in range(3)] == [1, 2, 3]


@given(st.text(min_size=1, max_size=40), counts)
def test_a_path_goes_to_one_existing_shard_every_time(rel: str, count: int) -> None:
    index = shard_of_path(rel, count)
    assert 1 <= index <= count
    assert shard_of_path(rel, count) == index


def test_paths_spread_over_every_shard() -> None:
    hit = {shard_of_path(f"a/b/{n}.dcm", 7) for n in range(500)}
    assert hit == set(range(1, 8))


def test_shard_of_path_is_the_same_in_every_process() -> None:
    # Pinned: a change here would split one run's shards differently from another's.
    assert [shard_of_path(f"x/{n}.dcm", 5) for n in range(6)] == [3, 1, 2, 4, 2, 1]


@settings(max_examples=50)
@given(st.integers(1, 50), st.integers(1, 50))
def test_parse_and_str_round_trip(index: int, count: int) -> None:
    if index > count:
        index, count = count, index
    assert Shard.parse(str(Shard(index, count))) == Shard(index, count)
    assert str(Shard.parse(f" {index}/{count} ")) == f"{index}/{count}"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("3", "is not K/N"),
        ("a/4", "whole numbers"),
        ("3/x", "whole numbers"),
        ("0/4", "K runs from 1 to N"),
        ("5/4", "K runs from 1 to N"),
        ("1/0", "out of range"),
        ("-1/4", "K runs from 1 to N"),
    ],
)
def test_a_bad_shard_is_one_clear_line(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        Shard.parse(text)
    assert "\n" not in str(caught.value)

"""The NBIA hierarchy-hash algorithm (protocol §1.3) and the archive-MD5 comparison rule (§3)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from nbia_audit.merkle import (
    MATCHES,
    ArchiveMd5Check,
    SeriesLeaf,
    check_archive_md5,
    combine,
    compute_hierarchy,
    normalise_archive_md5,
    series_hash,
)

A = "0cc175b9c0f1b6a831c399e269772661"
B = "92eb5ffee6ae2fec3ad71c777531578f"
C = "4a8a08f09d37b73795649038408b5f33"
SHORT = "1b6a831c399e26977266"  # an unpadded archive value (protocol §3)

# Expected values were produced outside Python, with coreutils:
#   printf '%s\n' ... | LC_ALL=C sort | tr -d '\n' | md5sum
S1 = "860acffb1be09462c4bacf573a915314"  # series {B, A, C}
S2 = "60fc537ad8092e88a30664daebdcea7d"  # series {NULL, A}: "null" + A
S3 = "04cf942ccef156fa3ae43ed2de6f21f1"  # series {A, SHORT}, SHORT verbatim
STUDY_12 = "56973265fe1606a8abab5c801b4a50bf"  # study {S1, S2}
STUDY_3 = "da99bc6fb619f6b8ec86564b4b281274"  # study {S3}
PATIENT = "ef02e3d833780d741415b6b92dc08f0c"  # patient {STUDY_12, STUDY_3}
COLLECTION = "fd25144d0cf41c38264a8f182b3e901e"  # collection {PATIENT}


def test_series_vectors() -> None:
    assert series_hash([B, A, C]) == S1
    assert series_hash([A, None]) == S2
    assert series_hash([SHORT, A]) == S3


def test_short_values_are_used_verbatim_not_padded() -> None:
    assert series_hash([SHORT, A]) != series_hash([SHORT.zfill(32), A])


def test_empty_levels_give_empty_string_not_md5_of_nothing() -> None:
    assert series_hash([]) == ""
    assert combine([]) == ""
    assert combine(["", ""]) == ""  # empty children add nothing (protocol §1.3)
    assert combine([None]) == ""


def test_empty_child_hash_adds_nothing() -> None:
    assert combine([S1, ""]) == combine([S1])


def test_upper_level_vectors() -> None:
    assert combine([S2, S1]) == STUDY_12
    assert combine([S3]) == STUDY_3
    assert combine([STUDY_3, STUDY_12]) == PATIENT
    assert combine([PATIENT]) == COLLECTION


def test_compute_hierarchy_matches_vectors() -> None:
    leaves = [
        SeriesLeaf("COLL", "P1", "st-12", "se-1", (B, A, C)),
        SeriesLeaf("COLL", "P1", "st-12", "se-2", (A, None)),
        SeriesLeaf("COLL", "P1", "st-3", "se-3", (SHORT, A)),
    ]
    tree = compute_hierarchy(leaves)
    assert tree.series == {"se-1": S1, "se-2": S2, "se-3": S3}
    assert tree.studies == {"st-12": STUDY_12, "st-3": STUDY_3}
    assert tree.patients == {("COLL", "P1"): PATIENT}
    assert tree.collections == {"COLL": COLLECTION}


def test_same_patient_id_in_two_collections_is_two_patients() -> None:
    leaves = [
        SeriesLeaf("X", "P1", "st-a", "se-a", (A,)),
        SeriesLeaf("Y", "P1", "st-b", "se-b", (B,)),
    ]
    tree = compute_hierarchy(leaves)
    assert set(tree.patients) == {("X", "P1"), ("Y", "P1")}
    assert tree.patients[("X", "P1")] != tree.patients[("Y", "P1")]


def test_mysql_collation_orders_uppercase_case_insensitively() -> None:
    # latin1_general_ci sorts "0a.." before "0B.."; plain sorted() puts "0B.." first (B < a in
    # code points), so this vector tells the two orders apart. Expected values from coreutils:
    #   z=000000000000000000000000000000; printf '%s' "09$z" "0a$z" "0B$z" | md5sum
    z = "0" * 30
    values = ["0B" + z, "0a" + z, "09" + z]
    assert series_hash(values) == "e2ba43320813b225ba714e018505ccd0"
    assert series_hash(values) != "5da6e0cce8122e6e1f18522824436773"  # the plain-sort order
    # NULLs still sort first:  printf '%s' null "0C$z" "0d$z" "0E$z" | md5sum
    assert series_hash(["0E" + z, None, "0d" + z, "0C" + z]) == "cb346eb2d15a5667dde8cfd2162ba70f"


md5_strings = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
archive_values = st.one_of(md5_strings, st.none(), md5_strings.map(lambda s: s.lstrip("0")))


@given(st.lists(archive_values, max_size=12), st.randoms())
def test_series_hash_ignores_order(values: list[str | None], rnd: random.Random) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert series_hash(values) == series_hash(shuffled)


@given(st.lists(st.one_of(md5_strings, st.just("")), max_size=12), st.randoms())
def test_combine_ignores_order(values: list[str], rnd: random.Random) -> None:
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert combine(values) == combine(shuffled)


@st.composite
def trees_with_one_change(draw: st.DrawFn) -> tuple[list[SeriesLeaf], list[SeriesLeaf], int]:
    """A random tree, plus the same tree with one image's MD5 replaced, added or removed."""
    leaves: list[SeriesLeaf] = []
    n_patients = draw(st.integers(1, 3))
    for p in range(n_patients):
        for s in range(draw(st.integers(1, 2))):
            for r in range(draw(st.integers(1, 2))):
                md5s = tuple(draw(st.lists(md5_strings, min_size=1, max_size=4, unique=True)))
                leaves.append(SeriesLeaf("C", f"P{p}", f"st{p}.{s}", f"se{p}.{s}.{r}", md5s))
    target = draw(st.integers(0, len(leaves) - 1))
    old = leaves[target]
    kind = draw(st.sampled_from(["replace", "add", "remove"]))
    fresh = draw(md5_strings.filter(lambda m: m not in old.stored_md5s))
    if kind == "replace":
        new_md5s = (fresh, *old.stored_md5s[1:])
    elif kind == "add":
        new_md5s = (*old.stored_md5s, fresh)
    else:
        new_md5s = old.stored_md5s[1:]
    changed = list(leaves)
    changed[target] = SeriesLeaf(
        old.collection, old.patient_id, old.study_uid, old.series_uid, new_md5s
    )
    return leaves, changed, target


@given(trees_with_one_change())
def test_any_single_image_change_changes_every_ancestor(
    case: tuple[list[SeriesLeaf], list[SeriesLeaf], int],
) -> None:
    before_leaves, after_leaves, target = case
    leaf = before_leaves[target]
    before, after = compute_hierarchy(before_leaves), compute_hierarchy(after_leaves)
    assert before.series[leaf.series_uid] != after.series[leaf.series_uid]
    assert before.studies[leaf.study_uid] != after.studies[leaf.study_uid]
    patient = (leaf.collection, leaf.patient_id)
    assert before.patients[patient] != after.patients[patient]
    assert before.collections[leaf.collection] != after.collections[leaf.collection]
    # ... and nothing outside that path changes.
    for other in before_leaves:
        if other.series_uid != leaf.series_uid:
            assert before.series[other.series_uid] == after.series[other.series_uid]
        if other.study_uid != leaf.study_uid:
            assert before.studies[other.study_uid] == after.studies[other.study_uid]


def test_normalise_archive_md5() -> None:
    assert normalise_archive_md5(" 1B6A ") == "1b6a".zfill(32)
    assert normalise_archive_md5(A) == A
    assert normalise_archive_md5(None) is None
    assert normalise_archive_md5(" ") is None
    assert normalise_archive_md5("xyz") is None
    assert normalise_archive_md5("0" * 33) is None


def test_check_archive_md5_outcomes() -> None:
    padded = SHORT.zfill(32)
    assert check_archive_md5(A, A) is ArchiveMd5Check.MATCH
    assert check_archive_md5(SHORT, padded) is ArchiveMd5Check.MATCH_SHORT
    assert check_archive_md5(A.upper(), A) is ArchiveMd5Check.MATCH_NONCANONICAL
    assert check_archive_md5(A, B) is ArchiveMd5Check.MISMATCH
    assert check_archive_md5(SHORT, SHORT + "000000000000") is ArchiveMd5Check.MISMATCH
    assert check_archive_md5(None, A) is ArchiveMd5Check.ARCHIVE_MISSING
    assert check_archive_md5(" ", A) is ArchiveMd5Check.ARCHIVE_MISSING  # CTP placeholder
    assert check_archive_md5("not-hex", A) is ArchiveMd5Check.ARCHIVE_MALFORMED
    assert check_archive_md5(A, A.upper()) is ArchiveMd5Check.MATCH  # a digest in upper case


def test_only_the_three_matches_prove_bytes() -> None:
    # Everything that judges a file (verify, fetch's resume) trusts MATCHES: a missing or
    # malformed archive string proves nothing, a mismatch disproves.
    assert {
        ArchiveMd5Check.MATCH,
        ArchiveMd5Check.MATCH_SHORT,
        ArchiveMd5Check.MATCH_NONCANONICAL,
    } == MATCHES


def test_short_md5_boundary_is_32_characters() -> None:
    # A starts with one zero: without it the archive string has 31 characters, already short.
    assert A.startswith("0") and not A.startswith("00")
    assert check_archive_md5(A[1:], A) is ArchiveMd5Check.MATCH_SHORT
    assert check_archive_md5(A, A) is ArchiveMd5Check.MATCH
    assert normalise_archive_md5(A[1:]) == A
    assert normalise_archive_md5("0" + A) is None  # 33 characters: not an MD5
    assert check_archive_md5("0" + A, A) is ArchiveMd5Check.ARCHIVE_MALFORMED


@given(md5_strings)
def test_stripping_leading_zeros_still_matches(digest: str) -> None:
    stored = digest.lstrip("0") or "0"
    outcome = check_archive_md5(stored, digest)
    expected = ArchiveMd5Check.MATCH if stored == digest else ArchiveMd5Check.MATCH_SHORT
    assert outcome is expected

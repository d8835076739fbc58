"""The words for what a verify run proved: only content hashed in this run says "verified";
a weaker proof never reads as a stronger one, and the weakest proof of a set is the one told.

(tests/verify/test_words.py checks the same words in the CLI's outputs.)
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nbia_audit.verify.words import (
    CONTENT,
    FINGERPRINT,
    NONE,
    PROOFS,
    SAMPLE,
    STAT,
    claim,
    headline,
    weakest,
)

PROOF_OR_NOISE = st.sampled_from([*PROOFS, "", "bogus"])


@given(st.lists(PROOF_OR_NOISE, max_size=8))
def test_the_weakest_known_proof_is_told(proofs: list[str]) -> None:
    known = [p for p in proofs if p in PROOFS and p != NONE]
    told = weakest(proofs)
    if not known:
        assert told == NONE
    else:
        assert told in known
        assert all(PROOFS.index(told) >= PROOFS.index(p) for p in known)


def test_one_stat_image_makes_the_whole_copy_stat() -> None:
    assert weakest([CONTENT] * 1000 + [STAT]) == STAT
    assert weakest([FINGERPRINT, SAMPLE, CONTENT]) == SAMPLE
    assert weakest(["", NONE]) == NONE


def test_only_content_hashed_in_this_run_is_called_verified() -> None:
    assert claim(CONTENT).startswith("verified:")
    for proof in (FINGERPRINT, STAT, SAMPLE, NONE, "", "bogus"):
        assert not claim(proof, "2026-01-01").startswith("verified"), proof


def test_a_stat_pass_says_nothing_was_re_read_and_names_its_day() -> None:
    said = claim(STAT, "2026-01-02")
    assert "on 2026-01-02" in said and "no file was re-read" in said
    assert "at an earlier pass" in claim(FINGERPRINT)


def test_headlines_never_claim_more_than_the_proof() -> None:
    assert headline("") == "CLEAN"  # drift: no content claim at all
    assert headline(CONTENT).startswith("CLEAN (verified:")
    assert headline(STAT).startswith("UNCHANGED (")
    assert headline(SAMPLE).startswith("CLEAN IN THE SAMPLE (")
    assert "no file content was proven" in headline(NONE)

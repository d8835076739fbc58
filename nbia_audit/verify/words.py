"""The words for what a ``verify`` run proved: one place, used by every output.

A stat pass reads no byte and a quick pass compares fingerprints with an earlier MD5 pass;
only a pass that hashed every file with MD5 in this run may say "verified". The text, JSON
and JUnit reports (render.py) and the Markdown, HTML and JSON supplements
(supplement_render.py) take their words from here, so no output can claim more than
another.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CONTENT",
    "FINGERPRINT",
    "NONE",
    "PROOFS",
    "SAMPLE",
    "STAT",
    "claim",
    "headline",
    "weakest",
]

CONTENT = "content"  # every file hashed with MD5 in this run, equal to the lock
FINGERPRINT = "fingerprint"  # xxh3-128 equal to the fingerprint of an earlier MD5 pass
STAT = "stat"  # stat data unchanged since an earlier MD5 pass; nothing re-read
SAMPLE = "sample"  # a random sample hashed; the rest only counted present
NONE = "none"  # nothing of the content is known (no file of it was found)

PROOFS = (CONTENT, FINGERPRINT, STAT, SAMPLE, NONE)  # strongest first


def weakest(proofs: Iterable[str]) -> str:
    """The weakest of ``proofs`` ("" and ``none`` ignored); ``none`` when nothing is left."""
    known = [p for p in proofs if p in PROOFS and p != NONE]
    return max(known, key=PROOFS.index) if known else NONE


def _on(since: str) -> str:
    return f" on {since}" if since else " at an earlier pass"


def claim(proof: str, since: str = "") -> str:
    """What a run at ``proof`` says about a copy it found nothing wrong with.

    ``since`` is the day (or ``first .. last`` days) the content was last hashed with MD5,
    for the proofs that rest on that earlier pass.
    """
    if proof == CONTENT:
        return "verified: every file's content hashed (MD5) in this run and equal to the lock"
    if proof == FINGERPRINT:
        return (
            f"unchanged since verified by content{_on(since)}: every file re-read and its "
            "xxh3-128 fingerprint equal to the one recorded then (files new or changed since "
            "were hashed with MD5)"
        )
    if proof == STAT:
        return (
            f"unchanged since verified by content{_on(since)} (stat data only: no file was "
            "re-read, so corruption that keeps size and timestamps is not detected)"
        )
    if proof == SAMPLE:
        return (
            "a random sample hashed and equal to the lock; the other files only counted "
            "present (see the sample statement)"
        )
    return "no file content was proven"


def headline(proof: str, since: str = "") -> str:
    """The verdict word of a clean run at ``proof`` ("" for drift: plain CLEAN)."""
    if not proof:
        return "CLEAN"
    if proof == STAT:
        return "UNCHANGED (" + claim(proof, since) + ")"
    if proof == SAMPLE:
        return "CLEAN IN THE SAMPLE (" + claim(proof, since) + ")"
    return "CLEAN (" + claim(proof, since) + ")"

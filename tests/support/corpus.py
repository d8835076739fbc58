"""The small deterministic corpus most tests serve, and its named user."""

from __future__ import annotations

from nbia_audit.emulator import CorpusSpec

__all__ = ["SMALL_SPEC", "USERS"]

# 2 collections x 2 patients x 1 study x 2 series x 3 images = 8 series, 24 images.
SMALL_SPEC = CorpusSpec(seed=7, collections=2, patients=2, studies=1, series=2, images=3)
USERS = {"alice": "secret"}

"""An NBIA (TCIA) archive emulator: a real loopback HTTP server speaking NBIA's wire format.

It serves a deterministic corpus of real DICOM files (built from pydicom's bundled samples)
through the v1, v2, v4 and "Advanced" REST families, computes ``getMD5Hierarchy`` with its own
implementation of the server's algorithm, and lets tests mutate the archive and inject faults.
It imports nothing from ``nbia_audit.client`` or ``nbia_audit.merkle`` on purpose.

    from nbia_audit.emulator import CorpusSpec, Emulator, Fault

    with Emulator.from_spec(CorpusSpec(seed=7)) as emu:
        emu.base_url  # http://127.0.0.1:PORT/nbia-api/services
"""

from __future__ import annotations

from nbia_audit.emulator.backend import RequestRecord
from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.emulator import Emulator
from nbia_audit.emulator.faults import Fault
from nbia_audit.emulator.generate import CorpusSpec, build_corpus

__all__ = ["Corpus", "CorpusSpec", "Emulator", "Fault", "RequestRecord", "build_corpus"]

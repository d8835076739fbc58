"""Shared pieces of the drift tests: one lock made once, fresh emulators, expected findings.

The emulator is deterministic for a ``CorpusSpec``, so a lock made against one emulator is a
valid lock for any fresh emulator of the same spec: the tests lock once per session and copy
the lock pair into each test, which gets its own emulator to mutate.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import NbiaClient
from nbia_audit.client.auth import Credentials
from nbia_audit.client.servers import ApiFamily
from nbia_audit.client.transport import RetryPolicy, Timeouts
from nbia_audit.emulator import CorpusSpec, Emulator
from nbia_audit.emulator.model import Series
from nbia_audit.findings import AuditReport, Finding
from nbia_audit.lock.run import lock_dataset
from nbia_audit.store.textlock import database_path

# 2 collections x 3 patients x 2 studies x 2 series x 3 images = 24 series, 72 images.
CORPUS = CorpusSpec(seed=11, collections=2, patients=3, studies=2, series=2, images=3)
WHOLE = "EMU-BRAIN"  # selected whole: its collection node is covered (fast mode uses it)
PARTIAL = "EMU-LUNG"  # only one patient selected
PARTIAL_PATIENT = "EMU-LUNG-001"
FAST_RETRY = RetryPolicy(attempts=3, base=0.001, cap=0.01)


def spec_text(server: str) -> str:
    return (
        f"name: drift-test\nserver: {server}\nselect:\n"
        f"  - collection: {WHOLE}\n"
        f"  - collection: {PARTIAL}\n    patients: [{PARTIAL_PATIENT}]\n"
    )


def client_for(
    emu: Emulator,
    *,
    credentials: Credentials | None = None,
    retry: RetryPolicy = FAST_RETRY,
    timeouts: Timeouts | None = None,
    api: ApiFamily = "v4",
) -> NbiaClient:
    return NbiaClient(
        emu.base_url, api=api, retry=retry, credentials=credentials, timeouts=timeouts
    )


def make_lock(
    emu: Emulator,
    folder: Path,
    *,
    series_only: bool = False,
    credentials: Credentials | None = None,
    text: str | None = None,
    problems_ok: bool = False,
) -> Path:
    """Lock the test spec (or ``text``) against ``emu`` in ``folder``; return the lock path."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "dataset.yaml"
    spec.write_text(text or spec_text(emu.base_url), encoding="utf-8")
    with client_for(emu, credentials=credentials) as client:
        result = lock_dataset(spec, ArchiveView(client), series_only=series_only)
    assert problems_ok or result.problems == ()
    return result.lock_path


def copy_lock(lock: Path, folder: Path) -> Path:
    """Copy a lock pair into ``folder``."""
    target = folder / lock.name
    shutil.copyfile(lock, target)
    shutil.copyfile(database_path(lock), database_path(target))
    return target


class Place:
    """Where things are in the test corpus, as it was when the Place was made (so that
    series added by one mutation do not shift the targets of the next)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.original = sorted(emu.corpus.series, key=lambda s: s.series_uid)

    def locked_series(self) -> list[Series]:
        """The series the test spec selects."""
        return [
            s
            for s in self.original
            if s.collection == WHOLE
            or (s.collection == PARTIAL and s.patient_id == PARTIAL_PATIENT)
        ]

    def series_in(self, collection: str, patient: str | None = None) -> list[Series]:
        return [
            s
            for s in self.original
            if s.collection == collection and (patient is None or s.patient_id == patient)
        ]

    def first_image(self, series_uid: str) -> tuple[str, str | None]:
        image = sorted(self.emu.corpus.images_of(series_uid), key=lambda i: i.sop_uid)[0]
        return image.sop_uid, image.stored_md5

    def stored(self, sop_uid: str) -> str | None:
        image = self.emu.corpus.image_by_sop(sop_uid)
        assert image is not None
        return image.stored_md5


Key = tuple[str, str, str, str, str, str]


def keys(findings: Iterable[Finding]) -> set[Key]:
    """(kind, series, image, old, new, field): the free-text detail only where it names
    the metadata field."""
    return {
        (
            f.kind,
            f.series_uid,
            f.sop_uid,
            f.old,
            f.new,
            f.detail if f.kind == "metadata-changed" else "",
        )
        for f in findings
    }


def assert_exactly(report: AuditReport, expected: set[Key]) -> None:
    """The report is complete and holds exactly ``expected``, each finding once."""
    assert report.complete, [s for s in report.series if s.status == "not-checked"]
    assert len(report.findings) == len(keys(report.findings))
    got = keys(report.findings)
    assert got == expected, {"unexpected": got - expected, "missing": expected - got}


def iter_statuses(report: AuditReport, status: str) -> Iterator[str]:
    return (s.series_uid for s in report.series if s.status == status)

"""nbia-audit: pin, fetch, verify and audit NBIA (TCIA) imaging datasets.

The public API (docs/api.md): one function per verb, each returning a typed report::

    lock_spec(spec, archive=None)           -> LockResult     nbia-audit lock
    check_lock_staleness(spec, archive=None) -> CheckResult   nbia-audit lock --check
    fetch_copy(lock, dest, archive=None)    -> FetchReport    nbia-audit fetch
    verify_copy(lock, directory)            -> AuditReport    nbia-audit verify
    detect_drift(lock, archive=None)        -> AuditReport    nbia-audit drift
    build_supplement(lock)                  -> Supplement     nbia-audit report

``archive`` is a server alias (``public``, ``nlst``), a URL, an ``NbiaClient`` or an
``ArchiveView``; None means the spec's or the lock's own server. Findings are values in
the reports; an exception (an ``NbiaAuditError``) means the check could not be performed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from nbia_audit.version import __version__

# Names are imported on first use (PEP 562), so ``import nbia_audit.errors`` or the command
# line's start-up does not load every verb, the HTTP client or pydicom.
_HOMES = {
    "lock_spec": "nbia_audit.lock.api",
    "check_lock_staleness": "nbia_audit.lock.api",
    "fetch_copy": "nbia_audit.fetch.api",
    "verify_copy": "nbia_audit.verify.run",
    "detect_drift": "nbia_audit.drift.api",
    "build_supplement": "nbia_audit.report.supplement",
    "render_supplement": "nbia_audit.report.supplement_render",
    "LockResult": "nbia_audit.lock.run",
    "LockChanges": "nbia_audit.lock.run",
    "CheckResult": "nbia_audit.lock.run",
    "FetchReport": "nbia_audit.fetch.run",
    "SeriesOutcome": "nbia_audit.fetch.run",
    "AuditReport": "nbia_audit.findings",
    "Finding": "nbia_audit.findings",
    "SeriesStatus": "nbia_audit.findings",
    "Supplement": "nbia_audit.report.supplement",
    "DatasetSpec": "nbia_audit.spec.load",
    "load_spec": "nbia_audit.spec.load",
    "LockContents": "nbia_audit.store.reader",
    "read_lock": "nbia_audit.store.reader",
    "ArchiveView": "nbia_audit.archive.view",
    "open_archive": "nbia_audit.archive.resolve",
    "NbiaClient": "nbia_audit.client.api",
    "Credentials": "nbia_audit.client.auth",
    "credentials_from_env": "nbia_audit.client.auth",
    "NbiaAuditError": "nbia_audit.errors",
    "SpecError": "nbia_audit.errors",
    "ApiError": "nbia_audit.errors",
    "StoreError": "nbia_audit.errors",
    "LockNotFound": "nbia_audit.errors",
    "DownloadError": "nbia_audit.errors",
}

__all__ = [
    "__version__",
    "lock_spec",
    "check_lock_staleness",
    "fetch_copy",
    "verify_copy",
    "detect_drift",
    "build_supplement",
    "render_supplement",
    "LockResult",
    "LockChanges",
    "CheckResult",
    "FetchReport",
    "SeriesOutcome",
    "AuditReport",
    "Finding",
    "SeriesStatus",
    "Supplement",
    "DatasetSpec",
    "load_spec",
    "LockContents",
    "read_lock",
    "ArchiveView",
    "open_archive",
    "NbiaClient",
    "Credentials",
    "credentials_from_env",
    "NbiaAuditError",
    "SpecError",
    "ApiError",
    "StoreError",
    "LockNotFound",
    "DownloadError",
]

if TYPE_CHECKING:
    from nbia_audit.archive.resolve import open_archive
    from nbia_audit.archive.view import ArchiveView
    from nbia_audit.client.api import NbiaClient
    from nbia_audit.client.auth import Credentials, credentials_from_env
    from nbia_audit.drift.api import detect_drift
    from nbia_audit.errors import (
        ApiError,
        DownloadError,
        LockNotFound,
        NbiaAuditError,
        SpecError,
        StoreError,
    )
    from nbia_audit.fetch.api import fetch_copy
    from nbia_audit.fetch.run import FetchReport, SeriesOutcome
    from nbia_audit.findings import AuditReport, Finding, SeriesStatus
    from nbia_audit.lock.api import check_lock_staleness, lock_spec
    from nbia_audit.lock.run import CheckResult, LockChanges, LockResult
    from nbia_audit.report.supplement import Supplement, build_supplement
    from nbia_audit.report.supplement_render import render_supplement
    from nbia_audit.spec.load import DatasetSpec, load_spec
    from nbia_audit.store.reader import LockContents, read_lock
    from nbia_audit.verify.run import verify_copy


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nbia_audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})

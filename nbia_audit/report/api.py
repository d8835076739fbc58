"""The publication supplement as the public API offers it: a lock path in, typed data out."""

from __future__ import annotations

import os
from pathlib import Path

from nbia_audit.findings import AuditReport
from nbia_audit.report.supplement import DEFAULT_INSTALL, Supplement, build_supplement

__all__ = ["make_supplement"]


def make_supplement(
    lock: str | os.PathLike[str],
    verification: AuditReport | None = None,
    *,
    install_command: str = DEFAULT_INSTALL,
) -> Supplement:
    """What the publication supplement of the lock at ``lock`` states, as ``nbia-audit
    report`` writes it; ``verification`` is a verify report of a local copy, if any.

    Render it with ``render_supplement(supplement, "md" | "html" | "json")``. Asks no
    server; reads the lock pair only.

    Raises:
        LockNotFound, StoreError: the lock cannot be read or does not prove itself.
    """
    return build_supplement(Path(lock), verification, install_command=install_command)

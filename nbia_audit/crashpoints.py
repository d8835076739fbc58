"""Named points where a test can make the process die as if killed, deterministically.

A crash-safety test that sends SIGKILL after a sleep hits a different moment on every machine
(and none at all when start-up alone is slower than the sleep). Instead the test sets
``NBIA_AUDIT_CRASHPOINT`` to one of the names a module passes to :func:`crashpoint`, and the
process kills itself exactly there. Unset (always, outside tests) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASHPOINT_ENV", "crashpoint"]

CRASHPOINT_ENV = "NBIA_AUDIT_CRASHPOINT"


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``NBIA_AUDIT_CRASHPOINT`` names this point: no cleanup, no
    ``finally`` blocks, no flushing, as a power cut or the OOM killer would leave it."""
    if os.environ.get(CRASHPOINT_ENV) == name:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

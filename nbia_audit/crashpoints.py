"""Named points where a test can make the process die as if killed, deterministically.

A crash-safety test that sends SIGKILL after a sleep hits a different moment on every machine
(and none at all when start-up alone is slower than the sleep). Instead the test sets
``NBIA_AUDIT_CRASHPOINT`` to one of the names a module passes to :func:`crashpoint`
(``name``, or ``name@N`` for the N-th time any thread reaches it), and the process kills
itself exactly there. Unset (always, outside tests) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

__all__ = ["CRASHPOINT_ENV", "crashpoint"]

CRASHPOINT_ENV = "NBIA_AUDIT_CRASHPOINT"

_reached: Counter[str] = Counter()
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``NBIA_AUDIT_CRASHPOINT`` names this point: no cleanup, no
    ``finally`` blocks, no flushing, as a power cut or the OOM killer would leave it."""
    wanted = os.environ.get(CRASHPOINT_ENV)
    if wanted is None:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    with _lock:
        _reached[name] += 1
        due = _reached[name] == (int(nth) if nth.isdigit() else 1)
    if due:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

"""The ``lock`` verb: resolve a spec into a lock, keep pins, check staleness.

``lock_spec`` and ``check_lock_staleness`` are the public verbs (any archive form, or the
spec's own server); ``lock_dataset`` and ``check_lock`` are the engines under them and under
the command line, given an archive view.
"""

from nbia_audit.lock.api import check_lock_staleness, lock_spec
from nbia_audit.lock.run import (
    CheckResult,
    LockChanges,
    LockResult,
    check_lock,
    lock_dataset,
)

__all__ = [
    "check_lock_staleness",
    "lock_spec",
    "CheckResult",
    "LockChanges",
    "LockResult",
    "check_lock",
    "lock_dataset",
]

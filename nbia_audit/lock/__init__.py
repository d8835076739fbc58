"""The ``lock`` verb: resolve a spec into a lock, keep pins, check staleness.

``lock_spec`` and ``check_lock_staleness`` are the public verbs (any archive form, or the
spec's own server); ``lock_dataset`` and ``check_lock`` are the engines under them and under
the command line, given an archive view. A problem whose kind is in ``SERIOUS_PROBLEMS``
is a finding.
"""

from nbia_audit.lock.api import check_lock_staleness, lock_spec
from nbia_audit.lock.run import (
    SERIOUS_PROBLEMS,
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
    "SERIOUS_PROBLEMS",
    "check_lock",
    "lock_dataset",
]

"""The ``lock`` verb: resolve a spec into a lock, keep pins, check staleness.

``lock_spec`` and ``check_lock_staleness`` are the public verbs (any archive form);
``lock_dataset`` and ``check_lock`` are the engines under them and under the command line.
"""

from nbia_audit.lock.api import check_lock_staleness, lock_spec
from nbia_audit.lock.run import (
    SERIOUS_PROBLEMS,
    CheckResult,
    LockChanges,
    LockResult,
    check_lock,
    default_lock_path,
    lock_dataset,
)

__all__ = [
    "SERIOUS_PROBLEMS",
    "CheckResult",
    "LockChanges",
    "LockResult",
    "check_lock",
    "check_lock_staleness",
    "default_lock_path",
    "lock_dataset",
    "lock_spec",
]

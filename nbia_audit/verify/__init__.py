"""The ``verify`` verb: is this folder exactly the locked dataset?

``verify_copy`` checks a copy against its lock (asking no server) and returns an
``AuditReport``; ``LEVELS`` are its levels of proof (``full``, ``quick``, ``stat``).
"""

from nbia_audit.verify.run import LEVELS, verify_copy

__all__ = ["LEVELS", "verify_copy"]

"""The ``verify`` verb: is this folder exactly the locked dataset?

``verify_folder`` is the public verb; ``verify_copy`` is the engine under it and under the
command line; ``LEVELS`` are the levels of proof (``full``, ``quick``, ``stat``).
"""

from nbia_audit.verify.api import verify_folder
from nbia_audit.verify.run import LEVELS, verify_copy

__all__ = ["LEVELS", "verify_copy", "verify_folder"]

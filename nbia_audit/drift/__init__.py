"""The ``drift`` verb: what changed upstream since a lock.

``detect_drift`` is the public verb (any archive form); ``check_drift`` is the engine under
it and under the command line.
"""

from nbia_audit.drift.api import detect_drift
from nbia_audit.drift.run import check_drift

__all__ = ["check_drift", "detect_drift"]

"""The ``doctor`` verb: does the archive still behave as nbia-audit assumes?

``run_doctor`` asks a server a bounded set of questions and returns a ``DoctorReport``.
"""

from nbia_audit.doctor.run import DoctorReport, run_doctor

__all__ = ["DoctorReport", "run_doctor"]

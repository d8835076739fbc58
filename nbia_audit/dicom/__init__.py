"""Reading DICOM headers: identity (UIDs) and the few fields a folder layout needs.

``read_identity`` (pydicom) and ``scan_identity`` (the first bytes alone) give a file's
``DicomIdentity``; ``read_header_values`` the ``HeaderValues`` a layout uses.
"""

from nbia_audit.dicom.fields import HeaderValues, read_header_values
from nbia_audit.dicom.header import DicomIdentity, NotDicomError, read_identity
from nbia_audit.dicom.scan import scan_identity

__all__ = [
    "DicomIdentity",
    "HeaderValues",
    "NotDicomError",
    "read_header_values",
    "read_identity",
    "scan_identity",
]

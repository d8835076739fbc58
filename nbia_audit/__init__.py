"""nbia-audit: pin, fetch, verify and audit NBIA (TCIA) imaging datasets."""

from __future__ import annotations

from nbia_audit.version import __version__

__all__ = ["__version__"]

"""nbia-audit: pin, fetch, verify and audit NBIA (TCIA) imaging datasets."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

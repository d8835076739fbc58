"""The tool's version: a leaf, so any layer can name it without importing the public API.

``nbia_audit/__init__.py`` re-exports it; the library's own modules import it from here,
because the package root sits at the top of the layers (it exports the verbs).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

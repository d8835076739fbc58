"""Rendering reports (text, JSON, JUnit) and the publication supplement.

``make_supplement`` is the public verb; ``build_supplement`` is the engine under it and
under the command line; ``render_supplement`` turns a ``Supplement`` into Markdown, HTML or
JSON; ``render_text``, ``render_json`` and ``render_junit`` render a verify or drift report.
"""

from nbia_audit.report.api import make_supplement
from nbia_audit.report.render import render_json, render_junit, render_text
from nbia_audit.report.supplement import (
    CollectionSummary,
    Supplement,
    Verification,
    build_supplement,
)
from nbia_audit.report.supplement_render import render_supplement

__all__ = [
    "CollectionSummary",
    "Supplement",
    "Verification",
    "build_supplement",
    "make_supplement",
    "render_json",
    "render_junit",
    "render_supplement",
    "render_text",
]

"""Rendering reports (text, JSON, JUnit) and the publication supplement.

``build_supplement`` collects what a paper's data supplement states from a lock (and a
verify report); ``render_supplement`` turns that ``Supplement`` into Markdown, HTML or JSON;
``render_text``, ``render_json`` and ``render_junit`` render a verify or drift report.
"""

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
    "render_json",
    "render_junit",
    "render_supplement",
    "render_text",
]

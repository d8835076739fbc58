"""The ``fetch`` verb: materialise exactly the locked bytes, proving every image.

``fetch_copy`` is the public verb (any archive form); ``fetch_dataset`` is the engine under
it and under the command line. ``FetchReport`` holds one ``SeriesOutcome`` per series.
"""

from nbia_audit.fetch.api import fetch_copy
from nbia_audit.fetch.layouts import BUILTIN_LAYOUTS, Layout, parse_layout
from nbia_audit.fetch.run import (
    FetchReport,
    SeriesOutcome,
    SeriesRetry,
    StreamLimits,
    fetch_dataset,
)

__all__ = [
    "BUILTIN_LAYOUTS",
    "FetchReport",
    "Layout",
    "SeriesOutcome",
    "SeriesRetry",
    "StreamLimits",
    "fetch_copy",
    "fetch_dataset",
    "parse_layout",
]

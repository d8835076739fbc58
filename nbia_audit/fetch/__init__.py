"""The ``fetch`` verb: materialise exactly the locked bytes, proving every image.

``fetch_copy`` is the public verb (any archive form); ``fetch_dataset`` is the engine under
it and under the command line. ``FetchReport`` holds one ``SeriesOutcome`` per series.
``fetch_shard`` and ``merge_fetch`` split a fetch into shards and merge them (docs/scale.md).
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
from nbia_audit.fetch.shards import fetch_shard, merge_fetch

__all__ = [
    "BUILTIN_LAYOUTS",
    "FetchReport",
    "Layout",
    "SeriesOutcome",
    "SeriesRetry",
    "StreamLimits",
    "fetch_copy",
    "fetch_dataset",
    "fetch_shard",
    "merge_fetch",
    "parse_layout",
]

"""How the library reports progress: one callback type for stages, one for bytes.

The library never prints; it calls ``on_progress(stage, done, total)`` and the command line
decides what, if anything, reaches the terminal (``cli.common.Progress``).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BytesCallback", "ProgressCallback"]

# on_progress(stage, done, total): ``done`` of ``total`` units of ``stage`` are finished.
ProgressCallback = Callable[[str, int, int], None]

# on_bytes(count): ``count`` more bytes arrived (a download's running tally, not a stage).
BytesCallback = Callable[[int], None]

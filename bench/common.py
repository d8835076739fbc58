"""Helpers shared by the benchmarks: an emulator in its own process, timing, reporting.

The emulator runs as ``nbia-audit emulator serve`` in a separate process, so the measured
client does not share a GIL with the server it talks to.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def emulator_process(args: Sequence[str]) -> Iterator[str]:
    """Start ``nbia-audit emulator serve ARGS``; yield its base URL; stop it afterwards."""
    command = [sys.executable, "-m", "nbia_audit", "emulator", "serve", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the emulator did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def row(label: str, *cells: object) -> str:
    """One aligned line of a result table."""
    return f"{label:<38}" + "".join(f"{cell!s:>16}" for cell in cells)

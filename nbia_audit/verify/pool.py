"""Read files on a thread pool for ``verify``, settling results on the calling thread.

The calling thread walks (or is handed) the entries, asks the run which read each file
needs, and hands batches of reads to the pool; results are settled in submission order, so
the tally is built by one thread only. At most a few batches per thread are in flight:
memory stays flat however large the tree.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from nbia_audit.progress import ProgressCallback
from nbia_audit.verify.plan import Run
from nbia_audit.verify.read import Examined
from nbia_audit.verify.walk import Blocked, FileEntry

__all__ = ["read_all"]

Job = Callable[[], Examined]
_Batch = list[tuple[FileEntry, Job]]
_BATCH = 16  # files per task
_IN_FLIGHT_PER_WORKER = 3  # batches queued per thread: work ready, memory bounded
_PROGRESS_EVERY = 256


def _read_batch(batch: _Batch) -> list[tuple[FileEntry, Examined]]:
    # One task per batch of files, not per file: a future per 0.5 MB file costs the main
    # thread more than the hashing threads can spare on two cores.
    return [(entry, job()) for entry, job in batch]


def read_all(
    run: Run,
    items: Iterable[FileEntry | Blocked],
    workers: int | None,
    on_progress: ProgressCallback | None,
    *,
    stage: str = "verify",
) -> None:
    """Account for every item; read the files that need it on ``workers`` threads."""
    threads = workers or os.cpu_count() or 1
    expected = sum(s.image_count for s in run.plan.exp.series.values())
    inflight: deque[Future[list[tuple[FileEntry, Examined]]]] = deque()
    batch: _Batch = []
    done = 0

    def settle_oldest() -> None:
        for entry, found in inflight.popleft().result():
            run.settle(entry, found)

    with ThreadPoolExecutor(threads, thread_name_prefix="nbia-verify") as pool:
        for item in items:
            done += 1
            if isinstance(item, Blocked):
                run.blocked(item.rel, item.detail, item.io_error, item.directory)
                continue
            job = run.admit(item)
            if job is not None:
                batch.append((item, job))
            if len(batch) >= _BATCH:
                inflight.append(pool.submit(_read_batch, batch))
                batch = []
                if len(inflight) >= threads * _IN_FLIGHT_PER_WORKER:
                    settle_oldest()
            if on_progress is not None and done % _PROGRESS_EVERY == 0:
                on_progress(stage, done, max(expected, done + 1))
        if batch:
            inflight.append(pool.submit(_read_batch, batch))
        while inflight:
            settle_oldest()
    if on_progress is not None:
        on_progress(stage, done, done)

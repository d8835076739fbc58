"""The Dask executor: one task per shard of whole series on a Dask cluster, merged here.

``verify_with_dask`` and ``fetch_with_dask`` split a run into N shards (the same shards as
``--shard K/N``), submit one task per shard (never one per file: a task costs milliseconds of
scheduling, a file a fraction of one), a window of them at a time, and merge the shard files
locally with the one merge. Every task runs ``verify_shard`` or ``fetch_shard`` on a worker and
writes its file into a fresh folder of the run folder, which must be on storage every worker
sees (a ``LocalCluster`` shares this machine's disk).

A worker that dies mid-task is Dask's to handle: the scheduler gives the task to another worker
(up to its ``allowed-failures``), and a shard's file only appears, renamed, once complete. A
shard that still fails leaves the run incomplete: ``ShardsIncomplete`` (exit 3), never a clean
report. Without a scheduler address a ``LocalCluster`` of worker processes is started for the
run. Dask is an optional extra; nothing imports it unless this executor runs.

Credentials never travel in a task: a fetch worker opens the archive itself, with
``NBIA_USER``/``NBIA_PASSWORD`` from its own environment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbia_audit.client.auth import credentials_from_env
from nbia_audit.crashpoints import crashpoint
from nbia_audit.errors import NbiaAuditError, ShardsIncomplete
from nbia_audit.fetch.layouts import parse_layout
from nbia_audit.fetch.run import FetchReport, SeriesRetry, StreamLimits
from nbia_audit.fetch.shards import fetch_shard, merge_fetch
from nbia_audit.findings import AuditReport
from nbia_audit.progress import ProgressCallback
from nbia_audit.shards import Shard, ShardResult
from nbia_audit.store.textlock import read_text_lock
from nbia_audit.verify.sampling import new_seed
from nbia_audit.verify.shards import merge_verify, verify_shard

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DaskTarget",
    "EngineUnavailable",
    "ShardFailure",
    "fetch_with_dask",
    "run_shards",
    "verify_with_dask",
]

# Tasks in flight at once, per worker thread: enough to keep every worker busy while results
# come back, few enough that a run of 100 000 shards never floods the scheduler.
_WINDOW_PER_THREAD = 2
# Workers of the LocalCluster started when no scheduler is named (each shard task has its own
# thread pool inside, so one thread per worker).
_LOCAL_WORKERS = 2


class EngineUnavailable(NbiaAuditError):
    """The engine asked for cannot run here: its optional package is missing, or no scheduler."""


@dataclass(frozen=True, slots=True)
class DaskTarget:
    """Which Dask cluster runs the tasks: a scheduler address, a scheduler file, or neither
    (a ``LocalCluster`` started for the run and closed after it)."""

    address: str | None = None
    scheduler_file: str | None = None
    local_workers: int = _LOCAL_WORKERS

    @property
    def local(self) -> bool:
        return self.address is None and self.scheduler_file is None


@dataclass(frozen=True, slots=True)
class ShardFailure:
    """A shard whose task did not complete: which, and the error it ended with (one line)."""

    shard: Shard
    reason: str


@dataclass(frozen=True, slots=True)
class _VerifyTask:
    lock: str
    root: str
    run: str
    level: str
    sample: float | None
    seed: int | None
    workers: int | None
    ignore: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _FetchTask:
    lock: str
    dest: str
    run: str
    server: str
    options: dict[str, Any] = field(default_factory=dict)


def verify_with_dask(
    lock_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    target: DaskTarget,
    shards: int | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    level: str = "full",
    sample: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
    ignore: Iterable[str] = (),
    on_progress: ProgressCallback | None = None,
    now: Callable[[], datetime] | None = None,
) -> AuditReport:
    """``verify`` in ``shards`` tasks on Dask (default: one per worker thread), then merged.

    Raises:
        EngineUnavailable: Dask is not installed, or a remote cluster without ``run_dir``.
        ShardsIncomplete: a shard's task failed (after Dask's own retries on lost workers).
        LockNotFound, StoreError: as ``verify_copy``.
    """
    if sample is not None and seed is None:
        seed = new_seed()  # one seed for every shard, reported like verify_copy's
    template = _VerifyTask(
        lock=os.path.abspath(lock_path),
        root=os.path.abspath(root),
        run="",
        level=level,
        sample=sample,
        seed=seed,
        workers=workers,
        ignore=tuple(ignore),
    )
    with _run_folder(run_dir, target, "verify") as run:
        spec = dataclasses.replace(template, run=str(run))
        task = functools.partial(_verify_shard_task, spec)
        _run_all("verify", task, shards, target, run, on_progress)
        return merge_verify(spec.lock, spec.root, run, on_progress=on_progress, now=now)


def fetch_with_dask(
    lock_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    target: DaskTarget,
    shards: int | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    server: str | None = None,
    layout: str = "classic",
    workers: int = 2,
    retry: SeriesRetry | None = None,
    limits: StreamLimits | None = None,
    on_progress: ProgressCallback | None = None,
) -> FetchReport:
    """``fetch`` in ``shards`` tasks on Dask, each worker talking to the archive, then merged.

    ``server`` overrides the lock's; each worker opens the archive with the credentials in its
    own environment (``NBIA_USER``, ``NBIA_PASSWORD``), never any sent with the task.

    Raises:
        SpecError: a bad layout (checked here, before any task runs).
        EngineUnavailable, ShardsIncomplete: as ``verify_with_dask``.
    """
    lock = os.path.abspath(lock_path)
    header = read_text_lock(Path(lock)).header
    parse_layout(layout)  # a bad layout is a usage error here, not N failed shards
    options: dict[str, Any] = {"layout": layout, "workers": workers}
    if retry is not None:
        options["retry"] = retry
    if limits is not None:
        options["limits"] = limits
    with _run_folder(run_dir, target, "fetch") as run:
        spec = _FetchTask(
            lock=lock,
            dest=os.path.abspath(dest),
            run=str(run),
            server=server or header.server or header.base_url,
            options=options,
        )
        task = functools.partial(_fetch_shard_task, spec)
        _run_all("fetch", task, shards, target, run, on_progress)
        return merge_fetch(spec.lock, spec.dest, run)


def run_shards(
    client: Client,
    task: Callable[[Shard], ShardResult],
    count: int,
    *,
    name: str,
    window: int,
    on_progress: ProgressCallback | None = None,
) -> tuple[list[ShardResult], list[ShardFailure]]:
    """Run ``task(Shard(k, count))`` for k in 1..count on ``client``, ``window`` at a time.

    Returns what completed and what failed, each in shard order. A failure is a value here:
    the caller decides that a failed shard makes the run incomplete.
    """
    # lazy: Dask is an optional extra, imported only when its executor runs
    from distributed import as_completed

    token = secrets.token_hex(4)  # two runs on one cluster never share a task key
    todo = iter(Shard(index, count) for index in range(1, count + 1))
    running = as_completed()
    owner: dict[object, Shard] = {}  # by task key

    def submit_next() -> None:
        shard = next(todo, None)
        if shard is None:
            return
        future = client.submit(
            task, shard, key=f"nbia-audit-{name}-{shard.index}-of-{count}-{token}", pure=False
        )
        owner[future.key] = shard
        running.add(future)

    for _ in range(max(window, 1)):
        submit_next()
    results: list[ShardResult] = []
    failures: list[ShardFailure] = []
    for future in running:
        shard = owner.pop(future.key)
        try:
            results.append(future.result())
        except (Exception, asyncio.CancelledError, concurrent.futures.CancelledError) as error:
            failures.append(ShardFailure(shard, _one_line(error)))
        future.release()
        submit_next()
        if on_progress is not None:
            on_progress("shards", len(results) + len(failures), count)
    return sorted(results, key=lambda r: r.shard), sorted(failures, key=lambda f: f.shard)


def _run_all(
    name: str,
    task: Callable[[Shard], ShardResult],
    shards: int | None,
    target: DaskTarget,
    run: Path,
    on_progress: ProgressCallback | None,
) -> None:
    with _client(target) as client:
        threads = sum(client.nthreads().values()) or 1
        count = shards if shards is not None else threads
        _, failures = run_shards(
            client,
            task,
            count,
            name=name,
            window=threads * _WINDOW_PER_THREAD,
            on_progress=on_progress,
        )
    if failures:
        first = failures[0]
        raise ShardsIncomplete(
            f"{len(failures)} of {count} shards did not complete on their Dask workers"
            f" (shard {first.shard}: {first.reason}); the run is incomplete, nothing was"
            f" merged: run it again (the shards that completed are in {run})",
            missing=tuple(str(f.shard) for f in failures),
        )


@contextlib.contextmanager
def _client(target: DaskTarget) -> Iterator[Client]:
    try:
        # lazy: Dask is an optional extra, imported only when its executor runs
        from distributed import Client, LocalCluster
    except ImportError:
        raise EngineUnavailable(
            "--executor dask needs Dask: pip install 'nbia-audit[dask]'"
        ) from None
    if target.local:
        with (
            LocalCluster(
                n_workers=target.local_workers,
                threads_per_worker=1,
                processes=True,
                # Any free port: the scheduler serves HTTP (health, metrics) even with no
                # dashboard, and the default 8787 may belong to another cluster.
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = (
            Client(target.address)
            if target.address is not None
            else Client(scheduler_file=target.scheduler_file)
        )
    except (OSError, ValueError) as error:
        where = target.address or target.scheduler_file
        raise EngineUnavailable(f"cannot reach the Dask scheduler {where}: {error}") from None
    with client:
        yield client


@contextlib.contextmanager
def _run_folder(
    run_dir: str | os.PathLike[str] | None, target: DaskTarget, verb: str
) -> Iterator[Path]:
    """A fresh folder for this run's shard files, removed once they are merged.

    Fresh, so no shard file of an earlier run can stand in for one of this run; kept when the
    run fails, for the record of what did complete.
    """
    if run_dir is None and not target.local:
        raise EngineUnavailable(
            "a Dask scheduler needs --run-dir: a folder on storage every worker can write"
        )
    parent = os.path.abspath(run_dir) if run_dir is not None else None
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix=f"dask-{verb}-", dir=parent))
    yield run
    shutil.rmtree(run, ignore_errors=True)


def _verify_shard_task(spec: _VerifyTask, shard: Shard) -> ShardResult:
    """One shard of ``verify``, on a worker."""
    crashpoint("engines:shard-started")
    return verify_shard(
        spec.lock,
        spec.root,
        shard,
        spec.run,
        level=spec.level,
        sample=spec.sample,
        seed=spec.seed,
        workers=spec.workers,
        ignore=spec.ignore,
        on_progress=_progress_on_worker,
    )


def _fetch_shard_task(spec: _FetchTask, shard: Shard) -> ShardResult:
    """One shard of ``fetch``, on a worker: its own archive, its own credentials."""
    crashpoint("engines:shard-started")
    return fetch_shard(
        spec.lock,
        spec.dest,
        shard,
        spec.run,
        archive=spec.server,
        credentials=credentials_from_env(),
        on_progress=_progress_on_worker,
        **spec.options,
    )


def _progress_on_worker(stage: str, done: int, total: int) -> None:
    # Nobody watches a worker's progress; the point lets a test kill a worker mid-shard.
    crashpoint("engines:shard-progress")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text}" if not isinstance(error, NbiaAuditError) else text

"""``nbia-audit fetch``: download exactly the locked series into a folder, verified."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from pathlib import Path

import click

from nbia_audit.cli.common import (
    FILE,
    FOLDER,
    Progress,
    command,
    fail,
    finish,
    make_archive,
    workers_option,
)
from nbia_audit.cli.executor import DaskRun, executor_options
from nbia_audit.cli.shardopts import check_shard_options, shard_options
from nbia_audit.cli.signals import interruptible
from nbia_audit.engines.daskexec import fetch_with_dask
from nbia_audit.errors import NbiaAuditError
from nbia_audit.fetch.run import (
    FetchReport,
    SeriesOutcome,
    SeriesRetry,
    StreamLimits,
    fetch_dataset,
)
from nbia_audit.fetch.shards import fetch_shard, merge_fetch
from nbia_audit.findings import FetchStatus
from nbia_audit.report.escaping import for_terminal
from nbia_audit.shards import Shard
from nbia_audit.store.textlock import read_text_lock
from nbia_audit.units import human_bytes

_SHOWN_REASONS = 8
_BAR = 24


@command()
@click.argument("lock_path", metavar="LOCK", type=FILE)
@click.option(
    "--dest",
    required=True,
    type=FOLDER,
    help="Folder to fetch into (created if missing).",
)
@click.option(
    "--layout",
    default="classic",
    show_default=True,
    metavar="classic|descriptive|flat|TEMPLATE",
    help="Folder layout, or a template such as '{collection}/{patient}/{series_uid}'"
    " (fields in docs/fetch.md).",
)
@workers_option(16, "Series downloaded at once.", default=2)
@click.option(
    "--series", "series_uids", multiple=True, metavar="UID", help="Only this series (repeatable)."
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Tries per series before it is reported as unverifiable.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=1.0),
    default=6 * 3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest one series download may take before it is cut and retried.",
)
@click.option(
    "--min-rate",
    type=click.FloatRange(min=0.0),
    default=16.0,
    show_default=True,
    metavar="KIB_PER_S",
    help="Slowest download accepted, in KiB/s averaged over each minute; a series"
    " slower than this is cut and retried (0: no minimum).",
)
@click.option("--server", help="Fetch from this server instead of the one the lock names.")
@shard_options("fetch")
@executor_options
@click.option("-q", "--quiet", is_flag=True, help="Plain lines per series, no progress bar.")
@interruptible("fetch")
def fetch(
    lock_path: Path,
    dest: Path,
    layout: str,
    workers: int,
    series_uids: tuple[str, ...],
    attempts: int,
    deadline: float,
    min_rate: float,
    server: str | None,
    shard: Shard | None,
    shard_dir: Path | None,
    merge_dir: Path | None,
    dask: DaskRun | None,
    quiet: bool,
) -> None:
    """Download the series LOCK pins into DEST, proving every image on the way in.

    Re-running skips what is already in place and verified, and finishes an interrupted run.
    On a cluster, run `--shard K/N --shard-dir RUN` for K = 1..N, then `--merge RUN`, which
    records what the shards placed and reports the whole fetch (docs/scale.md).
    """
    check_shard_options(shard, shard_dir, merge_dir)
    if (shard is not None or merge_dir is not None) and series_uids:
        raise click.BadOptionUsage("series", "--series is not for shards: the split gives each")
    display = FetchDisplay(live=not quiet and sys.stderr.isatty() and not os.environ.get("CI"))
    try:
        if dask is not None:
            report = fetch_with_dask(
                lock_path, dest, target=dask.target, shards=dask.shards, run_dir=dask.run_dir,
                server=server, layout=layout, workers=workers,
                retry=SeriesRetry(attempts=attempts),
                limits=StreamLimits(deadline=deadline, min_rate=min_rate * 1024),
                on_progress=Progress(quiet),
            )  # fmt: skip
            _summarise(report)
            finish(findings=bool(report.failed))
        if merge_dir is not None:
            report = merge_fetch(lock_path, dest, merge_dir)
            display.close()
            _summarise(report, advice=" (run their shards again, then merge again)")
            finish(findings=bool(report.failed))
        header = read_text_lock(lock_path).header
        archive = make_archive(server or header.server or header.base_url, header.api)
        with contextlib.closing(archive):
            if shard is not None and shard_dir is not None:
                result = fetch_shard(
                    lock_path, dest, shard, shard_dir, archive=archive, layout=layout,
                    workers=workers, retry=SeriesRetry(attempts=attempts),
                    limits=StreamLimits(deadline=deadline, min_rate=min_rate * 1024),
                    on_progress=display.progress, on_series=display.series,
                )  # fmt: skip
                display.close()
                click.echo(
                    for_terminal(
                        f"fetch shard {shard}: {result.series} series, {result.files} images in "
                        f"place; outcomes in {result.path} (then: fetch LOCK --dest DIR "
                        f"--merge {shard_dir})"
                    )
                )
                finish(findings=False)  # a shard's outcomes are not the verdict: --merge is
            report = fetch_dataset(
                lock_path,
                dest,
                archive,
                layout=layout,
                workers=workers,
                series=series_uids or None,
                retry=SeriesRetry(attempts=attempts),
                limits=StreamLimits(deadline=deadline, min_rate=min_rate * 1024),
                on_progress=display.progress,
                on_series=display.series,
            )
    except NbiaAuditError as error:
        display.close()
        fail(error)
    except KeyboardInterrupt:  # SIGINT or SIGTERM: interruptible says what is kept
        display.close()
        raise
    display.close()
    _summarise(report)
    finish(findings=bool(report.failed))


def _summarise(
    report: FetchReport,
    advice: str = "; none of their files were placed (run the same command again to retry them)",
) -> None:
    fetched, skipped, failed = report.fetched, report.skipped, report.failed
    rate = report.bytes_received / report.seconds if report.seconds > 0 else 0.0
    click.echo(
        f"Fetched {len(fetched)} series ({sum(s.images for s in fetched)} images, "
        f"{human_bytes(report.bytes_placed)}) into {report.dest} in {report.seconds:.1f} s "
        f"({human_bytes(int(rate))}/s); {len(skipped)} already in place and verified; "
        f"{len(failed)} failed."
    )
    filled = sum(1 for s in fetched if s.filled)
    if filled:
        click.echo(f"Pinned the images of {filled} series-only series into the lock database.")
    if failed:
        click.echo(
            f"Could not verify {len(failed)} series{advice}:",
            err=True,
        )
        for outcome in failed:
            _echo_failure(outcome)


def _echo_failure(outcome: SeriesOutcome) -> None:
    tries = f"{outcome.attempts} attempt" + ("s" if outcome.attempts != 1 else "")
    click.echo(f"  {outcome.series_uid} ({tries}):", err=True)
    for reason in outcome.reasons[:_SHOWN_REASONS]:
        click.echo(for_terminal(f"    {reason}"), err=True)  # server text: never raw
    hidden = len(outcome.reasons) - _SHOWN_REASONS
    if hidden > 0:
        click.echo(f"    ... and {hidden} more", err=True)


class FetchDisplay:
    """Progress: a bar with series, bytes, rate and ETA on a terminal; else plain lines."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.counts = {"check": (0, 0), "series": (0, 0), "bytes": (0, 0)}
        self._window: deque[tuple[float, int]] = deque()
        self._drawn = 0.0
        self._dirty = False

    def progress(self, stage: str, done: int, total: int) -> None:
        self.counts[stage] = (done, total)
        if stage == "bytes":
            now = time.monotonic()
            self._window.append((now, done))
            while len(self._window) > 2 and now - self._window[0][0] > 5.0:
                self._window.popleft()
        if self.live and (time.monotonic() - self._drawn > 0.1 or done == total):
            self._draw(stage)

    def series(self, outcome: SeriesOutcome) -> None:
        if outcome.status == FetchStatus.FAILED:
            self._clear()
            line = f"FAILED   {outcome.series_uid}: {outcome.reasons[0]}"
            click.echo(for_terminal(line), err=True)
        elif not self.live and outcome.status == FetchStatus.FETCHED:
            click.echo(
                f"fetched  {outcome.series_uid} ({outcome.images} images, "
                f"{human_bytes(outcome.bytes)}, {outcome.attempts} attempt"
                f"{'s' if outcome.attempts != 1 else ''})"
            )

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._dirty:
            click.echo("\r\x1b[K", err=True, nl=False, color=True)
            self._dirty = False

    def _draw(self, stage: str) -> None:
        self._drawn = time.monotonic()
        self._dirty = True
        if stage == "check":
            done, total = self.counts["check"]
            line = f"\r  checking what is in place: {done}/{total}\x1b[K"
            click.echo(line, err=True, nl=False, color=True)
            return
        series_done, series_total = self.counts["series"]
        done, total = self.counts["bytes"]
        filled = int(_BAR * done / total) if total else _BAR
        bar = "#" * filled + "-" * (_BAR - filled)
        rate = self._rate()
        eta = _clock((total - done) / rate) if rate > 0 else "--:--"
        click.echo(
            f"\r  [{bar}] {series_done}/{series_total} series  {human_bytes(done)}/"
            f"{human_bytes(total)}  {human_bytes(int(rate))}/s  ETA {eta}\x1b[K",
            err=True,
            nl=False,
            color=True,  # the escape clears the rest of the line; live mode is a terminal
        )

    def _rate(self) -> float:
        if len(self._window) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._window[0], self._window[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

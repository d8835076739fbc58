"""``nbia-audit lock``: resolve a spec into a lock, or check that a lock is up to date."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from nbia_audit.cli.common import (
    FILE,
    Progress,
    archive_workers_option,
    command,
    fail,
    finish,
    human_bytes,
    make_archive,
    quiet_option,
)
from nbia_audit.cli.signals import interruptible
from nbia_audit.errors import NbiaAuditError
from nbia_audit.lock.pin import SETTLE_ROUNDS
from nbia_audit.lock.run import LockChanges, LockResult, check_lock, lock_dataset
from nbia_audit.report.escaping import for_terminal
from nbia_audit.spec.load import load_spec

__all__ = ["lock"]


@command()
@click.argument("spec", type=FILE)
@click.option(
    "--lock",
    "lock_path",
    type=FILE,
    help="Where to write the lock (default: SPEC with .lock; the database gets .lock.db).",
)
@click.option("--upgrade", is_flag=True, help="Re-pin every series to what the archive serves now.")
@click.option(
    "--series-only",
    is_flag=True,
    help="Pin series hashes only; fetch fills in and checks the images later.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if the lock is stale (spec changed, or upstream differs).",
)
@click.option("--offline", is_flag=True, help="With --check: only compare the spec, ask no server.")
@archive_workers_option
@quiet_option
@interruptible("lock")
def lock(
    spec: Path,
    lock_path: Path | None,
    upgrade: bool,
    series_only: bool,
    check: bool,
    offline: bool,
    workers: int,
    quiet: bool,
) -> None:
    """Resolve SPEC (dataset.yaml) into a lock pinning every series and image."""
    if offline and not check:
        raise click.BadOptionUsage("offline", "--offline needs --check (a lock asks the archive)")
    try:
        loaded = load_spec(spec)
        archive = None if (check and offline) else make_archive(loaded.server, loaded.api)
        if check:
            result = check_lock(spec, archive, lock_path=lock_path, workers=workers)
            for reason in result.reasons:
                click.echo(for_terminal(f"stale: {reason}"))
            click.echo("lock is stale" if result.stale else "lock is up to date")
            finish(findings=result.stale)
        assert archive is not None
        outcome = lock_dataset(
            spec,
            archive,
            lock_path=lock_path,
            upgrade=upgrade,
            series_only=series_only,
            workers=workers,
            on_progress=Progress(quiet),
        )
    except NbiaAuditError as error:
        fail(error)
    if outcome.unsettled:
        _echo_unsettled(outcome)
        finish(findings=True)
    if outcome.not_visible:
        _echo_not_visible(outcome)
        finish(findings=True)
    h = outcome.header
    verb = "Wrote" if outcome.written else ("Kept" if outcome.pending else "Unchanged:")
    click.echo(
        f"{verb} {outcome.lock_path} ({h.series_count} series, {h.image_count} images, "
        f"{human_bytes(h.total_bytes)}; root {h.root_digest}; {outcome.requests} requests)"
    )
    first_lock = len(outcome.changes.added) == h.series_count and not outcome.changes.removed
    if not first_lock:
        _echo_changes(outcome.changes)
    if outcome.pending:
        click.echo(
            "Upstream differs from the pins (+ added, - removed, ~ content, m metadata); "
            "they are kept: `--upgrade` takes the changes"
        )
        _echo_changes(outcome.pending)
    for problem in outcome.problems:
        click.echo(
            f"archive problem: {problem.kind}: series {problem.series_uid}: {problem.detail}",
            err=True,
        )
    finish(findings=outcome.has_serious_problems)


def _echo_unsettled(outcome: LockResult) -> None:
    kept = f"{outcome.lock_path} is left as it was" if outcome.lock_path.exists() else "no lock"
    click.echo(
        f"Not written ({kept}): the archive changed {len(outcome.unsettled)} series while they"
        f" were asked, {SETTLE_ROUNDS + 1} times running, so their hash and image MD5s never"
        " agreed; run the lock again later:",
        err=True,
    )
    _echo_first([f"unsettled series {uid}" for uid in outcome.unsettled], err=True)


def _echo_not_visible(outcome: LockResult) -> None:
    kept = f"{outcome.lock_path} is left as it was" if outcome.lock_path.exists() else "no lock"
    click.echo(
        f"Not written ({kept}): the archive lists the images of {len(outcome.not_visible)} "
        "series but gives no MD5 for any of them: those series are hidden or not accessible to"
        " this account, not removed. Drop them from the spec, use an account that may read "
        "them, or lock with --series-only to pin series hashes alone:",
        err=True,
    )
    _echo_first([f"series {p.series_uid}: {p.detail}" for p in outcome.problems], err=True)


_CHANGES_SHOWN = 20  # per kind; `lock --check` and `drift` list everything


def _echo_changes(changes: LockChanges) -> None:
    metadata = tuple(f"{uid} ({', '.join(fields)})" for uid, fields in changes.metadata)
    for label, items in (
        ("+", changes.added),
        ("-", changes.removed),
        ("~", changes.changed),
        ("m", metadata),
    ):
        _echo_first([f"series {item}" for item in items], label=f"{label} ")


def _echo_first(lines: Sequence[str], *, label: str = "", err: bool = False) -> None:
    """The first ``_CHANGES_SHOWN`` of ``lines``, indented, then how many more were left out."""
    for line in lines[:_CHANGES_SHOWN]:
        click.echo(for_terminal(f"  {label}{line}"), err=err)
    if len(lines) > _CHANGES_SHOWN:
        click.echo(f"  {label}... and {len(lines) - _CHANGES_SHOWN} more series", err=err)

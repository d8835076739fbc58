"""``nbia-audit migrate``: rewrite a lock database in the current, compact layout."""

from __future__ import annotations

from pathlib import Path

import click

from nbia_audit.cli.common import FILE, command, fail, finish
from nbia_audit.cli.signals import interruptible
from nbia_audit.errors import NbiaAuditError
from nbia_audit.report.escaping import for_terminal
from nbia_audit.store.migrate import migrate_lock


@command()
@click.argument("lock_path", metavar="LOCK", type=FILE)
@interruptible("migrate")
def migrate(lock_path: Path) -> None:
    """Rewrite LOCK's database (LOCK.db) in the current, compact layout.

    The pair is proven first, the new database is written beside it under a temporary name and
    proven against the text lock, then renamed over the old one. The text lock does not
    change; a database in the current layout is left as it is.
    """
    try:
        done = migrate_lock(lock_path)
    except NbiaAuditError as error:
        fail(error)
    if done.changed:
        message = (
            f"Migrated {done.database} from layout {done.layout_before} to"
            f" {done.layout_after}: {done.bytes_before:,} -> {done.bytes_after:,} bytes"
            f" ({done.images:,} images)"
        )
    else:
        message = f"{done.database} is in layout {done.layout_after} already; nothing changed"
    click.echo(for_terminal(message))
    finish(findings=False)

"""``nbia-audit demo``: the researcher's story, end to end, against the embedded emulator."""

from __future__ import annotations

from pathlib import Path

import click

from nbia_audit.cli.common import (
    FOLDER,
    command,
    fail,
    finish,
)
from nbia_audit.cli.signals import interruptible
from nbia_audit.demo.story import DemoStep, run_demo
from nbia_audit.errors import NbiaAuditError

__all__ = ["demo"]


@command()
@click.option(
    "--dir",
    "workdir",
    type=FOLDER,
    default=Path("nbia-audit-demo"),
    show_default=True,
    help="Where the demo writes its spec, lock and data.",
)
@interruptible("demo")
def demo(workdir: Path) -> None:
    """Run the whole story against the embedded NBIA emulator, and check every step."""
    def show(step: DemoStep) -> None:
        mark = "ok  " if step.ok else "FAIL"
        click.echo(f"[{mark}] {step.title}")
        click.echo(f"       {step.detail}")

    click.echo(f"nbia-audit demo: working in {workdir.resolve()}")
    try:
        steps = run_demo(workdir, on_step=show)
    except NbiaAuditError as error:
        fail(error)
    passed = all(step.ok for step in steps)
    click.echo("Demo passed: every step behaved as expected." if passed else "Demo FAILED.")
    finish(findings=not passed)

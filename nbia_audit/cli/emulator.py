"""``nbia-audit emulator``: serve, build, mutate and fault an NBIA emulator."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from nbia_audit.cli.common import CONTEXT_SETTINGS, finish
from nbia_audit.emulator import CorpusSpec, Emulator, Fault, build_corpus
from nbia_audit.emulator.control import MUTATIONS, mutation_signatures
from nbia_audit.emulator.faults import FAULT_KINDS
from nbia_audit.emulator.folder import write_corpus
from nbia_audit.emulator.remote import ControlError, EmulatorUnreachable, RemoteEmulator

_COUNT = click.IntRange(min=0)


def corpus_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The generated-corpus options shared by ``serve`` and ``build``."""
    options = [
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--collections", type=_COUNT, default=2, show_default=True),
        click.option(
            "--patients", type=_COUNT, default=2, show_default=True, help="Per collection."
        ),
        click.option("--studies", type=_COUNT, default=1, show_default=True, help="Per patient."),
        click.option("--series", type=_COUNT, default=2, show_default=True, help="Per study."),
        click.option("--images", type=_COUNT, default=3, show_default=True, help="Per series."),
        click.option(
            "--image-bytes",
            # Rows and columns are 16-bit in DICOM; 256 MiB is beyond any real image.
            type=click.IntRange(min=1, max=256 << 20),
            default=None,
            help="Approximate image size (at most 256 MiB).",
        ),
        click.option("--unpadded-md5", is_flag=True, help="Store CTP-style short MD5s."),
        click.option("--mismatched-md5", type=_COUNT, default=0, help="Images with a stale MD5."),
        click.option(
            "--restricted", type=_COUNT, default=0, help="Trailing non-public collections."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _spec(options: dict[str, Any]) -> CorpusSpec:
    if options["restricted"] > options["collections"]:
        raise click.BadParameter(
            f"{options['restricted']} is more than the {options['collections']} collections",
            param_hint="--restricted",
        )
    return CorpusSpec(
        seed=options["seed"],
        collections=options["collections"],
        patients=options["patients"],
        studies=options["studies"],
        series=options["series"],
        images=options["images"],
        image_bytes=options["image_bytes"],
        unpadded_md5=options["unpadded_md5"],
        mismatched_md5=options["mismatched_md5"],
        restricted=options["restricted"],
    )


def _users(values: tuple[str, ...]) -> dict[str, str]:
    users = {}
    for value in values:
        name, sep, password = value.partition(":")
        if not sep:
            raise click.BadParameter(f"{value!r} is not NAME:PASSWORD", param_hint="--user")
        users[name] = password
    return users


@click.group("emulator", context_settings=CONTEXT_SETTINGS)
def emulator() -> None:
    """Run or control an NBIA (TCIA) archive emulator on loopback."""


@emulator.command(context_settings=CONTEXT_SETTINGS)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0 picks a free port.")
@click.option("--token-ttl", type=click.FloatRange(min=0), default=7200.0, show_default=True)
@click.option("--refresh-ttl", type=click.FloatRange(min=0), default=36000.0, show_default=True)
@click.option("--user", "users", multiple=True, metavar="NAME:PASSWORD", help="A named user.")
@click.option(
    "--corpus",
    "corpus_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Serve this folder of DICOM files instead of a generated corpus.",
)
@corpus_options
def serve(port: int, token_ttl: float, refresh_ttl: float, users: tuple[str, ...],
          corpus_dir: Path | None, **options: Any) -> None:  # fmt: skip
    """Serve until SIGINT/SIGTERM; the first line of output is the base URL."""
    settings: dict[str, Any] = {
        "token_ttl": token_ttl, "refresh_ttl": refresh_ttl, "users": _users(users), "port": port,
    }  # fmt: skip
    if corpus_dir is not None:
        emu = Emulator.from_folder(corpus_dir, **settings)
    else:
        emu = Emulator.from_spec(_spec(options), **settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        emu.start()
    except OSError as exc:
        _environment_error(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
            "pick another --port, or 0 for a free one",
        )
    with emu:
        click.echo(emu.base_url)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass


@emulator.command(context_settings=CONTEXT_SETTINGS)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@corpus_options
def build(out: Path, **options: Any) -> None:
    """Write a generated corpus as DICOM files (Collection/Patient/Study/Series/SOP.dcm)."""
    corpus = build_corpus(_spec(options))
    try:
        paths = write_corpus(corpus, out)
    except OSError as exc:
        _environment_error(f"cannot write {out}: {exc.strerror or exc}", "check the --out folder")
    click.echo(f"wrote {len(paths)} DICOM files under {out}")


def _mutation_help() -> str:
    lines = ["\b", "Actions and their --arg names ([optional]):"]
    lines += [f"  {a}: {args or '-'}" for a, args in mutation_signatures(Emulator).items()]
    return "\n".join(lines)


@emulator.command(context_settings=CONTEXT_SETTINGS, epilog=_mutation_help())
@click.argument("url")
@click.argument("action", type=click.Choice(MUTATIONS))
@click.option("--arg", "arguments", multiple=True, metavar="KEY=VALUE",
              help="An argument of the mutation, e.g. --arg sop_uid=1.2.3")  # fmt: skip
def mutate(url: str, action: str, arguments: tuple[str, ...]) -> None:
    """Change the archive of a running emulator (e.g. replace an image, add a series, run the
    nightly collection-hash job)."""
    kwargs: dict[str, Any] = {}
    for item in arguments:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--arg")
        if key == "images" and not value.isdigit():
            raise click.BadParameter(
                f"images must be a whole number, not {value!r}", param_hint="--arg"
            )
        kwargs[key] = int(value) if key == "images" else value
    try:
        result = RemoteEmulator(url).mutate(action, **kwargs)
    except ControlError as exc:
        raise click.UsageError(str(exc)) from exc  # a bad action or argument: exit 2
    except EmulatorUnreachable as exc:
        _environment_error(str(exc), "is `nbia-audit emulator serve` running at that URL?")
    if result is not None:
        click.echo(result)


@emulator.command(context_settings=CONTEXT_SETTINGS)
@click.argument("url")
@click.argument("kind", type=click.Choice(FAULT_KINDS + ("clear",)))
@click.option("--endpoint", default=None, help="Only this endpoint (e.g. getSeries).")
@click.option(
    "--times",
    type=click.IntRange(min=1),
    default=None,
    help="How many times (default: until cleared).",
)
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, help="latency: seconds.")
@click.option(
    "--status", type=click.IntRange(100, 599), default=503, help="status: the HTTP status."
)
@click.option("--retry-after", type=_COUNT, default=1, help="rate_limit: Retry-After seconds.")
@click.option("--after-bytes", type=_COUNT, default=0, help="truncate: bytes before the cut.")
@click.option("--count", type=_COUNT, default=1, help="drop_images: images to drop.")
def fault(url: str, kind: str, **options: Any) -> None:
    """Inject a fault into a running emulator (or ``clear`` them all)."""
    remote = RemoteEmulator(url)
    try:
        if kind == "clear":
            remote.clear_faults()
            return
        active = remote.add_fault(Fault(kind, **options))  # type: ignore[arg-type]
    except (ControlError, ValueError) as exc:  # ValueError: Fault's own checks
        raise click.UsageError(str(exc)) from exc  # a bad fault or option: exit 2
    except EmulatorUnreachable as exc:
        _environment_error(str(exc), "is `nbia-audit emulator serve` running at that URL?")
    click.echo(f"{len(active)} fault(s) active")


def _environment_error(message: str, hint: str) -> NoReturn:
    """One line and exit 3: the emulator could not run or be reached (not a usage error)."""
    click.echo(f"nbia-audit: error: {message} ({hint})", err=True)
    finish(findings=False, complete=False)

"""SIGINT and SIGTERM for every verb: exit 130/143 with one line on what is kept.

Ctrl-C used to reach click, which printed "Aborted!" and exited 1, the findings code; SIGTERM
killed the process without a word. Each verb is wrapped by :func:`interruptible`: the first
signal prints one line (what is kept, and that a re-run resumes) and raises
:class:`Interrupted` in the main thread, so the verb unwinds through its own cleanup. Worker
pools finish their current request before the process can exit; if that takes longer than
:data:`GRACE_SECONDS`, or a second signal arrives, the process exits at once. That is safe
because every write that matters is atomic: nbia-audit is built to survive SIGKILL at any
moment, and an early exit here is no worse.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "GRACE_SECONDS",
    "KEPT",
    "PAUSE_ENV",
    "Interrupted",
    "exit_code_for_signal",
    "interruptible",
]

GRACE_SECONDS = 5.0
"""How long an interrupted verb may take to unwind before the process exits anyway."""

PAUSE_ENV = "NBIA_AUDIT_PAUSE_AT"
"""Test hook: a verb named here stops after its signal handlers are installed, says so on
stderr, and waits for a signal (so a test can interrupt it without a timed sleep)."""

KEPT = {
    "lock": "the lock is as it was (it is only ever replaced whole); run the same command"
    " again to lock",
    "fetch": "files already placed are kept, each complete and verified; run the same command"
    " again to resume",
    "verify": "nothing was changed; run the same command again to verify",
    "drift": "nothing was changed; run the same command again to check for drift",
    "report": "no report was written and an earlier one is as it was; run the same command again",
    "demo": "the demo folder is kept as it is; run the demo again",
    "migrate": "the lock database is as it was (it is only ever replaced whole); run the same"
    " command again to migrate",
}

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM; a KeyboardInterrupt, so every
    cleanup written for Ctrl-C runs for SIGTERM too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code_for_signal(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


def interruptible(verb: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Wrap a click command callback so SIGINT/SIGTERM end it with one line and 130/143."""
    kept = KEPT[verb]

    def wrap(func: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(func)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            handler = _Handler(kept)
            handler.install()
            try:
                if os.environ.get(PAUSE_ENV) == verb:
                    _pause(verb)
                return func(*args, **kwargs)
            except KeyboardInterrupt:
                # A KeyboardInterrupt we did not raise (SIGINT before install, or raised
                # by hand) still gets the line and the interrupt's code.
                signum = handler.signum or signal.SIGINT
                handler.announce(signum)
                _flush()
                sys.exit(exit_code_for_signal(signum))
            finally:
                if handler.signum is None:  # the process lives on (a test runner, an embedder)
                    handler.uninstall()

        return run

    return wrap


class _Handler:
    def __init__(self, kept: str) -> None:
        self.kept = kept
        self.signum: int | None = None
        self._announced = False
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread (e.g. test runners)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self.on_signal)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # a second signal: stop waiting for the unwind
            _flush()
            os._exit(exit_code_for_signal(self.signum))
        self.signum = signum
        self.announce(signum)
        watchdog = threading.Timer(GRACE_SECONDS, _exit_now, (exit_code_for_signal(signum),))
        watchdog.daemon = True
        watchdog.start()
        raise Interrupted(signum)

    def announce(self, signum: int) -> None:
        if self._announced:
            return
        self._announced = True
        name = signal.Signals(signum).name
        try:
            sys.stderr.write(f"\nnbia-audit: interrupted by {name}: {self.kept}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed or a broken pipe: the exit code says it
            pass


def _exit_now(code: int) -> None:
    _flush()
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe
            stream.flush()


def _pause(verb: str) -> None:
    sys.stderr.write(f"nbia-audit: paused at {verb} ({PAUSE_ENV}); waiting for a signal\n")
    sys.stderr.flush()
    while True:
        signal.pause()

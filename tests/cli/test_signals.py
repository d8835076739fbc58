"""SIGINT and SIGTERM end every verb with 130/143 and one line saying what is kept.

Real subprocesses. A signal is sent only once the process has shown it is working: either it
printed that it reached the NBIA_AUDIT_PAUSE_AT hook, or the emulator holds its first request
(a one-shot latency fault that has been taken). No timed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.cli.signals import KEPT, PAUSE_ENV
from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from tests.support.fetch import make_lock

PYTHON = [sys.executable, "-m", "nbia_audit"]
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
EXPECTED_CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}


def start(args: list[str], **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("NBIA_USER", "NBIA_PASSWORD")}
    return subprocess.Popen(
        [*PYTHON, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **env},
        cwd="/",  # import the installed package, not a copy in the working directory
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=60)  # a guard, not a measurement
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr


def assert_interrupted(code: int, stderr: str, signum: int, verb: str) -> None:
    assert code == EXPECTED_CODE[signum], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Aborted!" not in stderr
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    name = signal.Signals(signum).name
    assert lines == [f"nbia-audit: interrupted by {name}: {KEPT[verb]}"], stderr[-3000:]
    assert "run the same command again" in KEPT[verb] or "run the demo again" in KEPT[verb]


def verb_args(verb: str, tmp_path: Path) -> list[str]:
    lock = tmp_path / "dataset.lock"
    lock.write_text("", encoding="utf-8")
    spec = tmp_path / "dataset.yaml"
    spec.write_text("", encoding="utf-8")
    return {
        "lock": ["lock", str(spec)],
        "fetch": ["fetch", str(lock), "--dest", str(tmp_path / "data")],
        "verify": ["verify", str(lock), str(tmp_path)],
        "drift": ["drift", str(lock)],
        "report": ["report", str(lock)],
        "demo": ["demo", "--dir", str(tmp_path / "demo")],
        "migrate": ["migrate", str(lock)],
    }[verb]


@pytest.mark.parametrize("signame", sorted(SIGNALS))
@pytest.mark.parametrize("verb", sorted(KEPT))
def test_every_verb_exits_130_or_143_with_one_line(tmp_path: Path, verb: str, signame: str) -> None:
    signum = SIGNALS[signame]
    process = start(verb_args(verb, tmp_path), **{PAUSE_ENV: verb})
    try:
        assert process.stderr is not None
        reached = process.stderr.readline()
        assert f"paused at {verb}" in reached, reached
        process.send_signal(signum)
    finally:
        code, _, stderr = finish(process)
    assert_interrupted(code, stderr, signum, verb)


@pytest.fixture
def stalling_emulator() -> Iterator[Emulator]:
    spec = CorpusSpec(seed=5, collections=1, patients=2, studies=1, series=2, images=2)
    with Emulator.from_spec(spec) as emu:
        yield emu


def stall_first_request(emu: Emulator) -> threading.Event:
    """Hold the next request for a long time; the event is set once a request is held."""
    emu.add_fault(Fault("latency", delay=30.0, times=1))
    held = threading.Event()

    def watch() -> None:
        while emu.faults and not held.wait(0.02):
            pass
        held.set()

    threading.Thread(target=watch, daemon=True).start()
    return held


def interrupt_mid_request(
    emu: Emulator, args: list[str], signum: int, verb: str
) -> tuple[int, str]:
    held = stall_first_request(emu)
    process = start(args)
    try:
        assert held.wait(60), "the process never reached the archive"
        assert process.poll() is None, "the process ended before it was interrupted"
        process.send_signal(signum)
    finally:
        code, stdout, stderr = finish(process)
    assert_interrupted(code, stderr, signum, verb)
    return code, stdout


@pytest.mark.parametrize("signame", sorted(SIGNALS))
def test_lock_interrupted_mid_request_writes_no_lock(
    tmp_path: Path, stalling_emulator: Emulator, signame: str
) -> None:
    spec = tmp_path / "dataset.yaml"
    names = sorted(c.name for c in stalling_emulator.corpus.collections)
    spec.write_text(
        f"name: t\nserver: {stalling_emulator.base_url}\nselect:\n"
        + "".join(f"  - collection: {n}\n" for n in names),
        encoding="utf-8",
    )
    interrupt_mid_request(stalling_emulator, ["lock", str(spec), "-q"], SIGNALS[signame], "lock")
    assert not (tmp_path / "dataset.lock").exists()
    assert not (tmp_path / "dataset.lock.db").exists()


def test_drift_interrupted_mid_request_leaves_the_lock_as_it_was(
    tmp_path: Path, stalling_emulator: Emulator
) -> None:
    lock = make_lock(tmp_path / "pinned", stalling_emulator)
    before = lock.read_bytes()
    interrupt_mid_request(stalling_emulator, ["drift", str(lock), "-q"], signal.SIGINT, "drift")
    assert lock.read_bytes() == before


def test_fetch_interrupted_by_sigterm_places_nothing_unverified(
    tmp_path: Path, stalling_emulator: Emulator
) -> None:
    lock = make_lock(tmp_path / "pinned", stalling_emulator)
    dest = tmp_path / "data"
    args = ["fetch", str(lock), "--dest", str(dest), "-q"]
    interrupt_mid_request(stalling_emulator, args, signal.SIGTERM, "fetch")
    # Other workers may have placed series while the first request was held: whatever is in
    # place must be the locked bytes (only "missing" findings), and a re-run completes it.
    if dest.exists():
        code, stdout, _ = finish(start(["verify", str(lock), str(dest), "--format", "json"]))
        kinds = {finding["kind"] for finding in json.loads(stdout)["findings"]}
        assert code in (0, 1) and kinds <= {"missing"}, stdout[-3000:]
    code, _, stderr = finish(start(args))
    assert code == 0, stderr[-3000:]
    code, stdout, _ = finish(start(["verify", str(lock), str(dest)]))
    assert code == 0, stdout[-3000:]

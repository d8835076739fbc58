"""Soak campaigns: SIGKILL fetch and lock at random moments, and run both through faults.

    python bench/soak.py                 # the full campaign (a few minutes)
    python bench/soak.py --quick         # the CI-sized one
    python bench/soak.py --only kill-fetch --kills 50 --seed 7

Everything runs on loopback against an in-process emulator; the verbs run as real
subprocesses (``python -m nbia_audit ...``), exactly as a user or CI runs them.

* ``kill-fetch``: one measured fetch fixes the length of a run; then each round starts fetch
  and SIGKILLs it at a moment drawn uniformly from that length. A killed run is resumed by the
  next round, so kills land at every stage. After every kill: every file in place is complete,
  at its own path, with the locked bytes. At the end: a clean run, then ``verify`` exits 0.
* ``kill-lock``: the same for ``lock`` (from scratch, or resuming a killed run's leftovers).
  After every kill the pair is either absent or consistent (recovered, integrity-checked,
  text and database of one commit). At the end a clean run pins exactly what the archive holds.
* ``faults``: fetch and lock through a proxy that fails the given share of requests (a reset
  before the answer, HTTP 503, or a body cut in half), re-run until they succeed. Nothing
  unverified may ever be in place; the final lock equals the reference and ``verify`` is clean.

"lost" counts files placed unverified or corrupt, locks that are inconsistent or pin anything
but the archive's truth, and final trees that ``verify`` does not pass. It must be 0; the
script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.server
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.textlock import database_path, read_text_lock, recover_interrupted

SPEC = CorpusSpec(
    seed=17, collections=1, patients=2, studies=1, series=3, images=6, image_bytes=24_000
)
VERB = [sys.executable, "-m", "nbia_audit"]
CAMPAIGNS = ("kill-fetch", "kill-lock", "faults")


@dataclass
class Row:
    """One line of the result table."""

    tried: str
    count: int
    lost: int
    command: str
    note: str = ""


@dataclass
class Bench:
    emu: Emulator
    work: Path
    rng: random.Random
    seed: int

    @property
    def spec_text(self) -> str:
        names = sorted(c.name for c in self.emu.corpus.collections)
        select = "".join(f"  - collection: {n}\n" for n in names)
        return f"name: soak\nserver: {self.emu.base_url}\nselect:\n{select}"

    def spec(self, folder: Path, server: str | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        text = self.spec_text
        if server is not None:
            text = text.replace(self.emu.base_url, server)
        path = folder / "dataset.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def expected_tree(self) -> dict[str, bytes]:
        """``{relative path: bytes}`` a classic fetch must produce, from the corpus itself."""
        expected = {}
        for series in self.emu.corpus.series:
            for image in self.emu.corpus.images_of(series.series_uid):
                rel = (
                    f"{series.collection}/{series.patient_id}/{series.study_uid}/"
                    f"{series.series_uid}/{image.sop_uid}.dcm"
                )
                expected[rel] = self.emu.corpus.image_bytes(image.sop_uid)
        return expected


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*VERB, *args], capture_output=True, timeout=timeout, check=False)


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*VERB, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_at(args: list[str], moment: float) -> tuple[bool, int]:
    """Start the verb, SIGKILL it ``moment`` seconds later; (killed, return code)."""
    process = start(args)
    time.sleep(moment)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.communicate()
    return killed, process.returncode


def unverified_in_place(dest: Path, expected: dict[str, bytes]) -> int:
    """Files under ``dest`` (outside .nbia-audit) that are not exactly a locked image."""
    bad = 0
    if not dest.exists():
        return 0
    for path in dest.rglob("*"):
        rel = path.relative_to(dest).as_posix()
        if rel.startswith(".nbia-audit") or not path.is_file():
            continue
        if expected.get(rel) != path.read_bytes():
            bad += 1
    return bad


def verify_clean(lock: Path, dest: Path, expected: dict[str, bytes]) -> bool:
    done = run(["verify", str(lock), str(dest), "-q"])
    present = {
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file() and not p.relative_to(dest).as_posix().startswith(".nbia-audit")
    }
    return done.returncode == 0 and present == set(expected)


def pins(lock: Path) -> tuple[object, ...]:
    with LockDatabase(database_path(lock)) as db:
        return (tuple(db.series()), tuple(db.images()))


def pair_consistent(lock: Path) -> bool:
    """After a kill: no pair at all, or a recovered pair whose text and database agree."""
    try:
        recover_interrupted(lock)
        if not lock.exists() and not database_path(lock).exists():
            return True
        text = read_text_lock(lock)
        with LockDatabase(database_path(lock)) as db:
            return db.integrity_ok() and db.header() == text.header
    except Exception as exc:  # noqa: BLE001 - any failure to read the pair is a lost lock
        print(f"  inconsistent lock pair {lock}: {exc}", file=sys.stderr)
        return False


def measured(args: list[str]) -> float:
    started = time.monotonic()
    done = run(args)
    if done.returncode != 0:
        raise SystemExit(f"the measured run failed: {done.stderr.decode()[-500:]}")
    return time.monotonic() - started


# -- campaigns ---------------------------------------------------------------------------------


def kill_fetch(bench: Bench, kills: int, reference: Path) -> Row:
    expected = bench.expected_tree()
    dest = bench.work / "kill-fetch-data"
    fetch = ["fetch", str(reference), "--dest", str(dest), "-q", "--workers", "2"]
    whole = measured(fetch)
    shutil.rmtree(dest)
    lost = landed = rounds = 0
    while landed < kills and rounds < kills * 4:
        rounds += 1
        killed, code = kill_at(fetch, bench.rng.uniform(0.02, whole))
        lost += unverified_in_place(dest, expected)
        if killed:
            landed += 1
        elif code == 0:
            lost += 0 if verify_clean(reference, dest, expected) else 1
            shutil.rmtree(dest)  # finished before the kill: start over
        else:
            lost += 1  # neither killed nor clean: a failure the soak does not expect
    done = run(fetch)
    lost += int(done.returncode != 0) + int(not verify_clean(reference, dest, expected))
    return Row(
        "SIGKILL of `fetch` at random moments",
        landed,
        lost,
        f"python bench/soak.py --only kill-fetch --kills {kills} --seed {bench.seed}",
        f"moments uniform in a measured {whole:.1f} s run; then re-run + verify",
    )


def kill_lock(bench: Bench, kills: int, truth: tuple[object, ...]) -> Row:
    folder = bench.work / "kill-lock"
    spec = bench.spec(folder)
    lock = folder / "dataset.lock"
    whole = measured(["lock", str(spec), "-q"])
    lost = landed = rounds = 0
    while landed < kills and rounds < kills * 4:
        rounds += 1
        if bench.rng.random() < 0.5:  # from scratch; else over what the last kill left
            for leftover in folder.glob("dataset.lock*"):
                leftover.unlink()
        killed, code = kill_at(["lock", str(spec), "-q"], bench.rng.uniform(0.02, whole))
        if killed:
            landed += 1
        elif code != 0:
            lost += 1
        lost += int(not pair_consistent(lock))
        if lock.exists() and pair_consistent(lock) and pins(lock) != truth:
            lost += 1
    done = run(["lock", str(spec), "-q"])
    lost += int(done.returncode != 0 or pins(lock) != truth)
    return Row(
        "SIGKILL of `lock` at random moments",
        landed,
        lost,
        f"python bench/soak.py --only kill-lock --kills {kills} --seed {bench.seed}",
        f"moments uniform in a measured {whole:.1f} s run; then re-run",
    )


def faults(
    bench: Bench, rate: float, rounds: int, reference: Path, truth: tuple[object, ...]
) -> Row:
    """``rounds`` times from scratch: lock, then fetch, each re-run until it exits 0."""
    expected = bench.expected_tree()
    lost = seen = injected = 0
    lock_runs: list[int] = []
    fetch_runs: list[int] = []
    for number in range(rounds):
        with fault_proxy(bench.emu.base_url, rate, random.Random(bench.rng.random())) as proxy:
            folder = bench.work / f"faults-{rate:g}-{number}"
            spec = bench.spec(folder, server=proxy.url)
            lock = folder / "dataset.lock"
            lock_runs.append(0)
            while lock_runs[-1] < 50:
                lock_runs[-1] += 1
                if run(["lock", str(spec), "-q"]).returncode == 0:
                    break
                lost += int(not pair_consistent(lock))
            lost += int(not lock.exists() or pins(lock) != truth)
            dest = folder / "data"
            fetch = ["fetch", str(reference), "--dest", str(dest), "-q", "--server", proxy.url]
            fetch_runs.append(0)
            while fetch_runs[-1] < 50:
                fetch_runs[-1] += 1
                code = run(fetch).returncode
                lost += unverified_in_place(dest, expected)
                if code == 0:
                    break
            lost += int(not verify_clean(reference, dest, expected))
            seen, injected = seen + proxy.requests, injected + proxy.injected
    return Row(
        f"lock + fetch with {rate:.0%} of requests failing ({rounds} from scratch)",
        injected,
        lost,
        f"python bench/soak.py --only faults --rates {rate:g} --fault-rounds {rounds} "
        f"--seed {bench.seed}",
        f"faults injected in {seen} requests; runs until exit 0: lock {lock_runs}, "
        f"fetch {fetch_runs}",
    )


# -- a proxy that fails a share of the requests ------------------------------------------------


@dataclass
class Proxy:
    url: str
    requests: int = 0
    injected: int = 0


@contextmanager
def fault_proxy(upstream: str, rate: float, rng: random.Random) -> Iterator[Proxy]:
    """Forward to ``upstream``; fail ``rate`` of the requests (reset, 503 or a cut body)."""
    origin = upstream.split("/nbia-api")[0]
    state = Proxy("")
    guard = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET", b"")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _serve(self, method: str, body: bytes) -> None:
            with guard:
                state.requests += 1
                fault = rng.choice(("reset", "503", "cut")) if rng.random() < rate else None
                state.injected += fault is not None
            if fault == "reset":
                self._reset()
                return
            if fault == "503":
                self._answer(503, "text/plain", b"Service Unavailable")
                return
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("content-type", "authorization")
            }
            answer = requests.request(
                method, origin + self.path, data=body, headers=headers, timeout=60
            )
            kind = answer.headers.get("Content-Type", "")
            if fault == "cut":
                self._answer(answer.status_code, kind, answer.content, cut=True)
            else:
                self._answer(answer.status_code, kind, answer.content)

        def _answer(self, status: int, kind: str, payload: bytes, cut: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2] if cut else payload)
            if cut:
                self.wfile.flush()
                self._reset()

        def _reset(self) -> None:
            linger = struct.pack("ii", 1, 0)  # close() sends a TCP reset
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.close_connection = True
            self.connection.close()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return  # a reset connection is this proxy's purpose

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/nbia-api/services"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- main --------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [
        "| what was tried | how many (kills, faults) | lost | command | notes |",
        "|---|---:|---:|---|---|",
    ]
    lines += [f"| {r.tried} | {r.count} | {r.lost} | `{r.command}` | {r.note} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI-sized campaign")
    parser.add_argument("--only", choices=CAMPAIGNS, action="append", help="repeatable")
    parser.add_argument("--kills", type=int, help="SIGKILLs per verb (50; --quick 2)")
    parser.add_argument("--rates", type=float, nargs="+", help="fault shares (0.05 0.2 0.5)")
    parser.add_argument("--fault-rounds", type=int, help="lock+fetch from scratch per rate (3)")
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    options = parser.parse_args(argv)
    kills = options.kills or (2 if options.quick else 50)
    rates = options.rates or ([0.2] if options.quick else [0.05, 0.2, 0.5])
    fault_rounds = options.fault_rounds or (1 if options.quick else 3)
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    chosen = options.only or list(CAMPAIGNS)
    started = time.monotonic()
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="nbia-soak-") as scratch,
        Emulator.from_spec(SPEC) as emu,
    ):
        # Latency spreads a run over time, so random kill moments land at every stage.
        emu.add_fault(Fault("latency", delay=0.02))
        bench = Bench(emu, Path(scratch), random.Random(seed), seed)
        reference_spec = bench.spec(bench.work / "reference")
        if run(["lock", str(reference_spec), "-q"]).returncode != 0:
            raise SystemExit("the reference lock failed")
        reference = reference_spec.with_suffix(".lock")
        truth = pins(reference)
        if "kill-fetch" in chosen:
            rows.append(kill_fetch(bench, kills, reference))
        if "kill-lock" in chosen:
            rows.append(kill_lock(bench, kills, truth))
        if "faults" in chosen:
            rows += [faults(bench, rate, fault_rounds, reference, truth) for rate in rates]
    print(table(rows))
    lost = sum(r.lost for r in rows)
    print(f"\nseed {seed}; {time.monotonic() - started:.0f} s; lost {lost}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

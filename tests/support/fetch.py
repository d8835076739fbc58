"""Helpers for the fetch tests: lock a corpus, look at a fetched tree, serve hostile ZIPs."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from nbia_audit.archive.view import ArchiveView
from nbia_audit.client import Credentials, NbiaClient
from nbia_audit.client.transport import RetryPolicy
from nbia_audit.emulator import Emulator
from nbia_audit.fetch.series import SeriesRetry
from nbia_audit.lock.run import lock_dataset
from nbia_audit.models import LockedImage, LockedSeries
from nbia_audit.store.database import LockDatabase
from nbia_audit.store.localstate import STATE_DIR, LocalState
from nbia_audit.store.textlock import database_path

# More client attempts than any transient fault below injects (times=3 or 4): with two
# workers the faults may all land on one request, which must still get through.
FAST = RetryPolicy(attempts=5, base=0.001, cap=0.01, retry_after_cap=0.05)
FAST_SERIES = SeriesRetry(attempts=3, base=0.001, cap=0.01)


def client_for(url: str, credentials: Credentials | None = None) -> NbiaClient:
    """A client that retries quickly (tests must not sleep for real backoffs)."""
    return NbiaClient(url, retry=FAST, credentials=credentials)


def make_lock(
    folder: Path, emu: Emulator, *, series_only: bool = False, select: str | None = None
) -> Path:
    """Lock every collection of ``emu`` (or ``select``) into ``folder/dataset.lock``."""
    folder.mkdir(parents=True, exist_ok=True)
    if select is None:
        names = sorted(c.name for c in emu.corpus.collections)
        select = "".join(f"  - collection: {name}\n" for name in names)
    spec = folder / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n{select}", encoding="utf-8")
    with client_for(emu.base_url) as client:
        return lock_dataset(spec, ArchiveView(client), series_only=series_only).lock_path


@dataclass(frozen=True)
class Locked:
    series: tuple[LockedSeries, ...]
    images: tuple[LockedImage, ...]


def read_lock(lock: Path) -> Locked:
    with LockDatabase(database_path(lock)) as db:
        return Locked(tuple(db.series()), tuple(db.images()))


def classic_paths(emu: Emulator, series_uids: set[str] | None = None) -> dict[str, str]:
    """``{relative path: md5}`` a classic fetch must produce, from the corpus itself."""
    expected = {}
    for series in emu.corpus.series:
        if series_uids is not None and series.series_uid not in series_uids:
            continue
        for image in emu.corpus.images_of(series.series_uid):
            rel = (
                f"{series.collection}/{series.patient_id}/{series.study_uid}/"
                f"{series.series_uid}/{image.sop_uid}.dcm"
            )
            expected[rel] = hashlib.md5(emu.corpus.image_bytes(image.sop_uid)).hexdigest()
    return expected


def tree(dest: Path) -> dict[str, str]:
    """``{relative path: md5}`` of every file under ``dest`` outside ``.nbia-audit``."""
    found = {}
    for root, dirs, files in os.walk(dest):
        dirs[:] = [d for d in dirs if not (Path(root) == dest and d == STATE_DIR)]
        for name in files:
            path = Path(root) / name
            found[path.relative_to(dest).as_posix()] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


def private_files(dest: Path) -> set[str]:
    """Files under ``dest/.nbia-audit`` (the state database, the fetch lock, temporaries)."""
    root = dest / STATE_DIR
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def state_paths(dest: Path) -> dict[str, str]:
    with LocalState(dest) as state:
        return {r.path: r.md5 for r in state.records()}


@contextmanager
def proxy(upstream: str, replace: Callable[[str], bytes | None]) -> Iterator[str]:
    """An HTTP proxy to the emulator that can answer some requests itself.

    ``replace(path_and_query)`` returns the body to serve instead (200,
    application/octet-stream), or None to forward the request. Yields the proxy's base URL.
    """
    origin = upstream.split("/nbia-api")[0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = replace(self.path)
            if body is not None:
                self._answer(200, body, "application/octet-stream")
                return
            answer = requests.get(origin + self.path, timeout=10)
            self._answer(answer.status_code, answer.content, answer.headers["Content-Type"])

        def do_POST(self) -> None:  # noqa: N802
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {"Content-Type": self.headers.get("Content-Type", "")}
            answer = requests.post(origin + self.path, data=data, headers=headers, timeout=10)
            self._answer(answer.status_code, answer.content, answer.headers["Content-Type"])

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/nbia-api/services"
    finally:
        server.shutdown()
        server.server_close()

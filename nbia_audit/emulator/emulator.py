"""``Emulator``: an NBIA archive on loopback, with controls for upstream change and faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from nbia_audit.emulator import hierarchy, mutations
from nbia_audit.emulator.api_carts import create_cart
from nbia_audit.emulator.auth import GUEST_USER
from nbia_audit.emulator.backend import Backend, RequestRecord
from nbia_audit.emulator.control import make_control
from nbia_audit.emulator.corpus import Corpus
from nbia_audit.emulator.faults import Fault
from nbia_audit.emulator.folder import read_corpus, write_corpus
from nbia_audit.emulator.generate import CorpusSpec, build_corpus
from nbia_audit.emulator.hierarchy import MD5_CACHE_SECONDS
from nbia_audit.emulator.search_cache import SEARCH_CACHE_IDLE, SEARCH_CACHE_LIFE
from nbia_audit.emulator.server import EmulatorHTTPServer, make_server


class Emulator:
    """A real NBIA-speaking HTTP server over a ``Corpus``.

    Use it as a context manager (or ``start``/``stop``); it binds 127.0.0.1 on a free port
    unless ``port`` is given. ``clock`` drives token expiry and the server-side caches: the
    collection-hash cache (``md5_cache_life``, 100 minutes) and the simple-search result cache
    (``search_cache_life`` 6 h, ``search_cache_idle`` 30 min), all settable for tests.
    ``user_agreement`` stands for the deployment's optional agreement file (appended to LICENSE).
    """

    def __init__(
        self,
        corpus: Corpus,
        *,
        token_ttl: float = 7200.0,
        refresh_ttl: float = 36000.0,
        users: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        md5_cache_life: float = MD5_CACHE_SECONDS,
        search_cache_life: float = SEARCH_CACHE_LIFE,
        search_cache_idle: float = SEARCH_CACHE_IDLE,
        user_agreement: str | None = None,
    ) -> None:
        self.corpus = corpus
        self.backend = Backend(
            corpus,
            users=users or {},
            access_ttl=token_ttl,
            refresh_ttl=refresh_ttl,
            clock=clock,
            md5_cache_life=md5_cache_life,
            search_cache_life=search_cache_life,
            search_cache_idle=search_cache_idle,
            user_agreement=user_agreement,
        )
        self._host = host
        self._port = port
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_spec(cls, spec: CorpusSpec | None = None, **options: Any) -> Emulator:
        """An emulator over a generated corpus (``CorpusSpec()`` by default)."""
        return cls(build_corpus(spec or CorpusSpec()), **options)

    @classmethod
    def from_folder(cls, path: str | Path, **options: Any) -> Emulator:
        """An emulator serving a folder of DICOM files (see ``folder.read_corpus``)."""
        return cls(read_corpus(Path(path)), **options)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; runs the nightly job once, as the server does."""
        if self._server is not None:
            return self
        server = make_server(self.backend, make_control(self), self._host, self._port)
        self._server = server
        self.backend.origin = f"http://{self._host}:{server.server_address[1]}"
        self.run_nightly_job()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Start if needed and block until ``stop`` is called from another thread."""
        self.start()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: the emulator is not running.
        """
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() or use `with`")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT/nbia-api``."""
        return f"http://{self._host}:{self.port}/nbia-api"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/nbia-api/services``: what clients are configured with."""
        return f"{self.root_url}/services"

    # -- faults and the request log --------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        """Activate a fault rule."""
        self.backend.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.backend.faults.clear()

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The rules that can still fire."""
        return self.backend.faults.active

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far (control-API calls excluded)."""
        return self.backend.log.snapshot()

    @property
    def request_count(self) -> int:
        """How many requests were served so far."""
        return len(self.requests)

    def reset_request_log(self) -> None:
        """Forget the request log."""
        self.backend.log.clear()

    # -- archive-side jobs -----------------------------------------------------------------
    def run_nightly_job(self) -> dict[str, str]:
        """Refresh the cached collection hashes (guest view); returns the changed ones."""
        return hierarchy.run_nightly_job(self.corpus, self.backend.guest_sites)

    def clear_md5_cache(self) -> None:
        """Empty the 100-minute in-memory collection-hash cache (a server restart)."""
        self.backend.md5_cache.clear()

    def clear_search_cache(self) -> None:
        """Empty the simple-search result cache (what a server restart does)."""
        self.backend.search_cache.clear()

    def expire_tokens(self) -> None:
        """Make every issued access token expire now (refresh tokens keep working)."""
        self.backend.tokens.expire_all()

    # -- upstream mutations ----------------------------------------------------------------
    def replace_image(self, sop_uid: str, data: bytes | None = None) -> str:
        """New bytes for an image (and a new stored MD5, returned)."""
        return mutations.replace_image(self.corpus, sop_uid, data)

    def add_image(self, series_uid: str) -> str:
        """Append an image to a series; returns its SOP Instance UID."""
        return mutations.add_image(self.corpus, series_uid)

    def remove_image(self, sop_uid: str) -> None:
        """Delete an image."""
        mutations.remove_image(self.corpus, sop_uid)

    def add_series(
        self,
        study_uid: str | None = None,
        collection: str | None = None,
        patient_id: str | None = None,
        images: int = 3,
    ) -> str:
        """Add a series to an existing study or a new study; returns its UID."""
        return mutations.add_series(
            self.corpus,
            study_uid=study_uid,
            collection=collection,
            patient_id=patient_id,
            images=images,
        )

    def remove_series(self, series_uid: str) -> None:
        """Delete a series and its images."""
        mutations.remove_series(self.corpus, series_uid)

    def hide_series(self, series_uid: str) -> None:
        """Set visibility 0: the series leaves lists, study/patient hashes and downloads."""
        mutations.set_visibility(self.corpus, series_uid, "0")

    def show_series(self, series_uid: str) -> None:
        """Set visibility back to 1."""
        mutations.set_visibility(self.corpus, series_uid, "1")

    def set_license(self, collection: str, short_name: str) -> None:
        """Relicense a collection (a license short name from ``getLicenses``)."""
        mutations.set_license(self.corpus, collection, short_name)

    def set_doi(self, collection: str, doi: str) -> None:
        """Change a collection's DOI."""
        mutations.set_doi(self.corpus, collection, doi)

    def set_release_date(self, target: str, when: datetime | date | str) -> None:
        """Set the release date of a series (by UID) or of a whole collection."""
        mutations.set_release_date(self.corpus, target, when)

    def shorten_md5(self, sop_uid: str) -> str | None:
        """Store an image's MD5 without leading zeros (protocol §3); returns the new value."""
        return mutations.shorten_md5(self.corpus, sop_uid)

    def set_stored_md5(self, sop_uid: str, value: str | None) -> None:
        """Store an arbitrary ``md5_digest`` for an image (e.g. one that does not match)."""
        mutations.set_stored_md5(self.corpus, sop_uid, value)

    def add_cart(self, name: str, series_uids: list[str], user: str = GUEST_USER) -> None:
        """Create a shared cart, as ``createSharedList`` would for ``user``.

        Raises:
            ValueError: a series is unknown or hidden, or the name is taken.
        """
        sites = self.backend.sites_for(user)
        error = create_cart(self.corpus, name, list(series_uids), user, sites)
        if error is not None:
            raise ValueError(error)

    def write_corpus(self, folder: str | Path) -> list[Path]:
        """Write every image as a DICOM file under ``folder`` (see ``folder.write_corpus``)."""
        return write_corpus(self.corpus, Path(folder))

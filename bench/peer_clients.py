"""Run tcia_utils' and nbiatoolkit's NBIA functions against the emulator, base URL changed only.

Not part of the test suite, and the project never depends on these libraries: install them
into a separate venv and run this file with that venv's Python::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install tcia_utils==3.3.5 nbiatoolkit==1.3.1
    /tmp/peers-venv/bin/python bench/peer_clients.py            # starts .venv's emulator
    /tmp/peers-venv/bin/python bench/peer_clients.py --base-url http://127.0.0.1:PORT/nbia-api/services

The only change made to each library is its base URL: tcia_utils' ``setApiUrl`` returns the
emulator's ``…/services/v4/`` (``…/v1/`` for ``getContentsByName``), and nbiatoolkit's client
gets the emulator's ``…/services/`` as its base URL and its OAuth2 base URL. Every socket to a
host other than loopback is refused, so a function that needs an outside host (DataCite, the
real logout URL) shows up as "outside host" instead of quietly reaching the internet.

Prints one row per function: library, function, ok/fail/outside, note. Exit 0 when every
function that needs no outside host is ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class OutsideHost(Exception):
    """A library tried to connect beyond loopback."""


@dataclass
class Row:
    library: str
    function: str
    status: str  # ok, fail, outside
    note: str


def _guard_sockets() -> None:
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = str(address[0])
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise OutsideHost(host)
        return original(self, address)

    socket.socket.connect = guarded  # type: ignore[method-assign,assignment]
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost") and not str(host).startswith("127."):
            raise OutsideHost(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = resolve


class _Errors(logging.Handler):
    """Collects what the libraries log at WARNING and above during one call."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _emulator(nbia_audit: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [str(nbia_audit), "emulator", "serve", "--port", "0", "--user", "alice:secret"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def _corpus(base_url: str) -> list[dict[str, Any]]:
    origin = base_url.split("/nbia-api/", 1)[0]
    with urllib.request.urlopen(f"{origin}/_emulator/series") as response:
        data = json.load(response)
    rows: list[dict[str, Any]] = data["series"] if isinstance(data, dict) else data
    return rows


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    if hasattr(value, "shape"):
        return f"{type(value).__name__} {value.shape}"
    if isinstance(value, (list, dict, str, bytes)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _run(
    library: str,
    name: str,
    call: Callable[[], Any],
    ok: Callable[[Any], bool] | None = None,
    *,
    not_rtstruct: bool = False,
) -> Row:
    handler = _Errors()
    logging.getLogger().addHandler(handler)
    try:
        value = call()
    except ValueError as exc:
        if not_rtstruct and "RTSTRUCT" in str(exc):
            # It read the tags over the wire and refused a non-RTSTRUCT series, as designed.
            return Row(
                library,
                name,
                "ok",
                "tags read; ValueError: not an RTSTRUCT (no RTSTRUCT in corpus)",
            )
        return Row(library, name, "fail", f"ValueError: {str(exc)[:90]}")
    except OutsideHost as exc:
        return Row(library, name, "outside", f"needs {exc}")
    except Exception as exc:  # noqa: BLE001 - the table reports any failure
        cause: BaseException | None = exc
        while cause is not None:  # requests wraps our refusal several times
            if isinstance(cause, OutsideHost):
                return Row(library, name, "outside", f"needs {cause}")
            cause = cause.__cause__ or cause.__context__
        return Row(library, name, "fail", f"{type(exc).__name__}: {str(exc)[:90]}")
    finally:
        logging.getLogger().removeHandler(handler)
    outside = [m for m in handler.messages if "OutsideHost" in m or "needs" in m]
    if outside:
        return Row(library, name, "outside", outside[0][:90])
    good = ok(value) if ok is not None else value is not None and _nonempty(value)
    note = _describe(value)
    if not good and handler.messages:
        note += f"; logged: {handler.messages[-1][:80]}"
    return Row(library, name, "ok" if good else "fail", note)


def _nonempty(value: Any) -> bool:
    if hasattr(value, "empty"):
        return not value.empty
    if isinstance(value, (list, dict, str, bytes)):
        return len(value) > 0
    return True


def tcia_utils_rows(base_url: str, corpus: list[dict[str, Any]], workdir: Path) -> list[Row]:
    from tcia_utils import nbia  # type: ignore[import-not-found]

    services = base_url.rstrip("/")

    def set_api_url(endpoint: str, api_url: str = "nbia") -> str:
        return f"{services}/v1/" if endpoint == "getContentsByName" else f"{services}/v4/"

    nbia.setApiUrl = set_api_url  # the base URL, and nothing else, is changed
    s = corpus[0]
    collection, patient, series = s["collection"], s["patient_id"], s["series_uid"]
    study = s["study_uid"]
    sop = s["images"][0]["sop_uid"]
    first = nbia.getSeries(collection=collection)[0]
    modality, doi = first["Modality"], first["DataDescriptionURI"]
    uids = [x["series_uid"] for x in corpus[:2]]
    manifest = workdir / "peer.tcia"
    L = "tcia_utils"
    rows = [
        _run(L, "getCollections", lambda: nbia.getCollections()),
        _run(L, "getBodyPart", lambda: nbia.getBodyPart(collection=collection)),
        _run(L, "getModality", lambda: nbia.getModality(collection=collection)),
        _run(L, "getPatient", lambda: nbia.getPatient(collection=collection)),
        _run(
            L,
            "getPatientByCollectionAndModality",
            lambda: nbia.getPatientByCollectionAndModality(collection, modality),
        ),
        _run(
            L,
            "getNewPatientsInCollection",
            lambda: nbia.getNewPatientsInCollection(collection, "2000/01/01"),
        ),
        _run(L, "getStudy", lambda: nbia.getStudy(collection, patientId=patient)),
        _run(
            L,
            "getNewStudiesInPatient",
            lambda: nbia.getNewStudiesInPatient(collection, patient, "2000/01/01"),
        ),
        _run(L, "getSeries", lambda: nbia.getSeries(collection=collection, studyUid=study)),
        _run(L, "getUpdatedSeries", lambda: nbia.getUpdatedSeries("2000/01/01")),
        _run(L, "getSeriesList", lambda: nbia.getSeriesList(uids)),
        _run(L, "getSeriesSize", lambda: nbia.getSeriesSize(series)),
        _run(L, "getSopInstanceUids", lambda: nbia.getSopInstanceUids(series)),
        _run(L, "getManufacturer", lambda: nbia.getManufacturer(collection=collection)),
        _run(L, "getCollectionDescriptions", lambda: nbia.getCollectionDescriptions()),
        _run(L, "getCollectionPatientCounts", lambda: nbia.getCollectionPatientCounts()),
        _run(L, "getModalityCounts", lambda: nbia.getModalityCounts(collection=collection)),
        _run(L, "getBodyPartCounts", lambda: nbia.getBodyPartCounts(collection=collection)),
        _run(L, "getManufacturerCounts", lambda: nbia.getManufacturerCounts(collection)),
        _run(L, "getDicomTags", lambda: nbia.getDicomTags(series)),
        _run(L, "getSegRefSeries", lambda: nbia.getSegRefSeries(series), lambda v: True),
        _run(L, "getDoiMetadata", lambda: nbia.getDoiMetadata(doi)),
        _run(L, "getSimpleSearch", lambda: nbia.getSimpleSearch(collections=[collection])),
        _run(
            L,
            "getSimpleSearch(format=manifest)",
            lambda: nbia.getSimpleSearch(collections=[collection], format="manifest"),
            lambda v: any(workdir.glob("manifest-*.tcia")),  # saved to the working directory
        ),
        _run(
            L,
            "getSimpleSearch(format=uids)",
            lambda: nbia.getSimpleSearch(collections=[collection], format="uids"),
        ),
        _run(
            L,
            "getSimpleSearch(format=manifest_text)",
            lambda: manifest.write_text(
                nbia.getSimpleSearch(collections=[collection], format="manifest_text")
            ),
        ),
        _run(L, "manifestToList", lambda: nbia.manifestToList(str(manifest))),
        _run(
            L,
            "downloadSeries",
            lambda: nbia.downloadSeries(
                uids, input_type="list", path=str(workdir / "tu"), format="df"
            ),
        ),
        _run(
            L,
            "downloadSeries(hash=y)",
            lambda: nbia.downloadSeries(
                uids[:1], input_type="list", path=str(workdir / "tuh"), hash="y", format="df"
            ),
        ),
        _run(
            L,
            "downloadImage",
            lambda: nbia.downloadImage(series, sop, path=str(workdir / "ti")),
            lambda v: any((workdir / "ti").rglob("*.dcm")),
        ),
        _run(
            L,
            "reportCollectionSummary",
            lambda: nbia.reportCollectionSummary(uids, input_type="list", format="df"),
        ),
        _run(L, "reportDoiSummary", lambda: nbia.reportDoiSummary(uids, input_type="list")),
        _run(
            L,
            "makeSeriesReport",
            lambda: nbia.makeSeriesReport(uids, input_type="list", format="df"),
            lambda v: True,
        ),
        _run(L, "reportDicomTags", lambda: nbia.reportDicomTags(uids[:1])),
        _run(L, "idcOhifViewer", lambda: nbia.idcOhifViewer(nbia.getSeries(collection=collection))),
    ]
    return rows


def shared_cart_row(base_url: str, series: list[str]) -> Row:
    from tcia_utils import nbia

    origin = base_url.split("/nbia-api/", 1)[0]
    body = json.dumps({"action": "add_cart", "name": "peer-cart", "series_uids": series}).encode()
    request = urllib.request.Request(
        f"{origin}/_emulator/mutate", data=body, headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request).close()
    return _run("tcia_utils", "getSharedCart", lambda: nbia.getSharedCart("peer-cart"))


class _BaseUrl:
    """Stands in for nbiatoolkit's ``NBIA_BASE_URLS`` member: only ``.value`` is read."""

    def __init__(self, value: str) -> None:
        self.value = value


def nbiatoolkit_rows(base_url: str, corpus: list[dict[str, Any]], workdir: Path) -> list[Row]:
    from nbiatoolkit import NBIAClient  # type: ignore[import-not-found]
    from nbiatoolkit.auth import OAuth2  # type: ignore[import-not-found]

    services = base_url.rstrip("/") + "/"
    client = NBIAClient(log_level="ERROR")
    client._oauth2_client = OAuth2(base_url=services)
    client.base_url = _BaseUrl(services)
    s = corpus[0]
    collection, patient, series = s["collection"], s["patient_id"], s["series_uid"]
    modality = client.getSeries(Collection=collection)[0]["Modality"]
    L = "nbiatoolkit"
    rows = [
        _run(L, "getCollections", lambda: client.getCollections()),
        _run(L, "getCollectionDescriptions", lambda: client.getCollectionDescriptions(collection)),
        _run(L, "getCollectionPatientCount", lambda: client.getCollectionPatientCount()),
        _run(L, "getModalityValues", lambda: client.getModalityValues(Collection=collection)),
        _run(
            L,
            "getModalityValues(Counts=True)",
            lambda: client.getModalityValues(Collection=collection, Counts=True),
        ),
        _run(L, "getPatients", lambda: client.getPatients(Collection=collection)),
        _run(L, "getNewPatients", lambda: client.getNewPatients(collection, "2000/01/01")),
        _run(
            L,
            "getPatientsByCollectionAndModality",
            lambda: client.getPatientsByCollectionAndModality(collection, modality),
        ),
        _run(L, "getBodyPartCounts", lambda: client.getBodyPartCounts(Collection=collection)),
        _run(L, "getStudies", lambda: client.getStudies(collection, PatientID=patient)),
        _run(L, "getSeries", lambda: client.getSeries(Collection=collection)),
        _run(L, "getSeriesMetadata", lambda: client.getSeriesMetadata(series)),
        _run(L, "getNewSeries", lambda: client.getNewSeries("01/01/2000")),
        _run(L, "getDICOMTags", lambda: client.getDICOMTags(series)),
        _run(L, "getRefSeriesUIDs", lambda: client.getRefSeriesUIDs(series), not_rtstruct=True),
        _run(
            L,
            "generateFilePathFromDICOMTags",
            lambda: client.generateFilePathFromDICOMTags(series),
        ),
        _run(
            L,
            "downloadSeries",
            lambda: client.downloadSeries(series, downloadDir=str(workdir / "nt")),
            lambda v: v is True and any((workdir / "nt").rglob("*.dcm")),
        ),
        _run(L, "refresh token", lambda: _refresh(client)),
        _run(L, "logout", lambda: client.OAuth_client.logout(), lambda v: True),
    ]
    return rows


def _refresh(client: Any) -> str:
    oauth = client.OAuth_client
    _ = oauth.access_token  # log in
    oauth._refresh_access_token()
    return str(oauth._access_token)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="a running emulator's …/nbia-api/services URL")
    parser.add_argument("--nbia-audit", type=Path, default=ROOT / ".venv" / "bin" / "nbia-audit")
    args = parser.parse_args()
    _guard_sockets()
    logging.basicConfig(level=logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        base_url = args.base_url or stack.enter_context(_emulator(args.nbia_audit))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stack.enter_context(contextlib.chdir(workdir))  # CSV and report files land here
        corpus = _corpus(base_url)
        rows = tcia_utils_rows(base_url, corpus, workdir)
        rows.append(shared_cart_row(base_url, [x["series_uid"] for x in corpus[:2]]))
        rows += nbiatoolkit_rows(base_url, corpus, workdir)
    width = max(len(r.function) for r in rows)
    print(f"{'library':<12} {'function':<{width}} {'result':<8} note")
    for r in rows:
        print(f"{r.library:<12} {r.function:<{width}} {r.status:<8} {r.note}")
    counts = {k: sum(r.status == k for r in rows) for k in ("ok", "fail", "outside")}
    print(f"\n{counts['ok']} ok, {counts['fail']} fail, {counts['outside']} need an outside host")
    return 0 if counts["fail"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

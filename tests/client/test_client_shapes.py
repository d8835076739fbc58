"""Every archive answer is checked by shape before use (issue 11 #2).

The real emulator serves the data; a small tampering proxy in this file stands between it and
the client and replaces chosen answers with what a hostile or broken server sends with status
200: a maintenance page, a JSON list of the wrong records, a CSV with a 128 KiB field. The
emulator itself never answers like that, so the proxy is the only way to produce them.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from nbia_audit.cli.common import ExitCode
from nbia_audit.client import NbiaClient
from nbia_audit.emulator import Emulator
from nbia_audit.errors import ApiError, ApiProtocolError
from nbia_audit.fetch.run import fetch_dataset
from tests.support.cli import run_cli
from tests.support.client import ALICE, Sleeps, make_client, running_emulator
from tests.support.fetch import FAST_SERIES, classic_paths, client_for, make_lock, proxy, tree

MAINTENANCE = (
    b"<!DOCTYPE html>\n<html><head><title>Down for maintenance</title></head>\n"
    b"<body><h1>TCIA is down for scheduled maintenance</h1>\x1b[2J</body></html>\n"
)
HUGE = "f" * (128 * 1024)

Tamper = Callable[[str, bytes], bytes | None]
"""(path with query, request body) -> the 200 body to serve instead, or None to forward."""


@dataclass
class _Plan:
    tamper: Tamper
    served: list[str] = field(default_factory=list)  # paths answered by the proxy itself


@contextmanager
def tampering(upstream: str, tamper: Tamper) -> Iterator[tuple[str, _Plan]]:
    """A proxy to ``upstream`` that forwards headers and bodies, and may answer itself."""
    origin = upstream.split("/nbia-api")[0]
    plan = _Plan(tamper)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            return

        def do_GET(self) -> None:
            self._handle("GET", b"")

        def do_POST(self) -> None:
            self._handle("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _handle(self, method: str, sent: bytes) -> None:
            own = plan.tamper(self.path, sent)
            if own is not None:
                plan.served.append(self.path)
                self._answer(200, own, "text/html")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            answer = requests.request(
                method, origin + self.path, data=sent or None, headers=headers, timeout=10
            )
            kind = answer.headers.get("Content-Type", "text/plain")
            self._answer(answer.status_code, answer.content, kind)

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/nbia-api/services", plan
    finally:
        server.shutdown()
        server.server_close()


def first_times(n: int, body: bytes, *, where: Callable[[str, bytes], bool]) -> Tamper:
    """Serve ``body`` for the first ``n`` requests matching ``where`` (n < 0: always)."""
    left = [n]

    def tamper(path: str, sent: bytes) -> bytes | None:
        if not where(path, sent) or left[0] == 0:
            return None
        left[0] -= 1
        return body

    return tamper


def _on(endpoint: str, needle: str = "") -> Callable[[str, bytes], bool]:
    return lambda path, sent: endpoint in path and needle in (path + sent.decode())


@pytest.fixture
def emu() -> Iterator[Emulator]:
    yield from running_emulator()


def _client(url: str, sleeps: Sleeps | None = None, **options: object) -> NbiaClient:
    import random

    from tests.support.client import FAST_RETRY, FakeClock

    return NbiaClient(
        url,
        retry=FAST_RETRY,
        sleep=sleeps if sleeps is not None else Sleeps(),
        clock=FakeClock(),
        rng=random.Random(0),
        **options,  # type: ignore[arg-type]
    )


def _a_series(emu: Emulator) -> str:
    return sorted(s.series_uid for s in emu.corpus.series)[0]


# -- hashes ----------------------------------------------------------------------------------------


def test_a_maintenance_page_as_series_hash_is_retried_then_the_real_hash_kept(
    emu: Emulator,
) -> None:
    uid = _a_series(emu)
    truth = make_client(emu).series_hash(uid)
    sleeps = Sleeps()
    tamper = first_times(2, MAINTENANCE, where=_on("getMD5Hierarchy"))
    with tampering(emu.base_url, tamper) as (url, plan):
        assert _client(url, sleeps).series_hash(uid) == truth
    assert len(plan.served) == 2 and len(sleeps.delays) == 2


def test_a_lasting_maintenance_page_as_series_hash_is_a_server_error_naming_all(
    emu: Emulator,
) -> None:
    uid = _a_series(emu)
    tamper = first_times(-1, MAINTENANCE, where=_on("getMD5Hierarchy"))
    with tampering(emu.base_url, tamper) as (url, plan), pytest.raises(ApiProtocolError) as caught:
        _client(url).series_hash(uid)
    message = str(caught.value)
    assert "v4/getMD5Hierarchy" in message and "HTTP 200" in message
    assert "<!DOCTYPE html> <html><head><title>Down for maintenance" in message
    assert f"SeriesInstanceUID={uid}" in message and "4 attempts" in message
    assert "\x1b" not in message and "\n" not in message and len(message) < 500
    assert len(plan.served) == 4


@pytest.mark.parametrize(
    "answer",
    [MAINTENANCE, b"d41d8cd98f00b204e9800998ecf8427e\n", b"D41D8CD98F00B204E9800998ECF8427E", b"0"],
)
def test_a_series_hash_must_be_32_lower_hex_digits_or_empty(emu: Emulator, answer: bytes) -> None:
    tamper = first_times(-1, answer, where=_on("getMD5Hierarchy"))
    with (
        tampering(emu.base_url, tamper) as (url, _plan),
        pytest.raises(ApiProtocolError, match="not a hierarchy hash"),
    ):
        _client(url).series_hash(_a_series(emu))


def test_a_maintenance_page_is_never_an_image_md5(emu: Emulator) -> None:
    sop = emu.corpus.images_of(_a_series(emu))[0].sop_uid
    tamper = first_times(-1, MAINTENANCE, where=_on("getMD5HashForImage"))
    with tampering(emu.base_url, tamper) as (url, _plan), pytest.raises(ApiProtocolError) as caught:
        _client(url).image_md5(sop)
    assert "v4/getMD5HashForImage" in str(caught.value) and sop in str(caught.value)


@pytest.mark.parametrize("stored", [b"", b" ", b"0badc0de", b"ABCDEF0123456789abcdef0123456789"])
def test_every_documented_image_md5_form_is_kept_verbatim(emu: Emulator, stored: bytes) -> None:
    sop = emu.corpus.images_of(_a_series(emu))[0].sop_uid
    tamper = first_times(-1, stored, where=_on("getMD5HashForImage"))
    with tampering(emu.base_url, tamper) as (url, _plan):
        assert _client(url).image_md5(sop) == stored.decode()


# -- JSON lists and CSV ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b'[{"SOPInstanceUID": "<img src=x onerror=alert(1)>"}]',
        b'[{"Modality": "CT"}]',
        b"[1, 2, 3]",
        MAINTENANCE,
    ],
)
def test_an_image_list_of_the_wrong_shape_is_retried_then_believed(
    emu: Emulator, answer: bytes
) -> None:
    uid = _a_series(emu)
    truth = make_client(emu).sop_instance_uids(uid)
    tamper = first_times(1, answer, where=_on("getSOPInstanceUIDs"))
    with tampering(emu.base_url, tamper) as (url, plan):
        assert _client(url).sop_instance_uids(uid) == truth
    assert len(plan.served) == 1


def test_a_series_list_of_the_wrong_shape_is_reported_after_retries(emu: Emulator) -> None:
    tamper = first_times(-1, b'[{"Collection": "X"}]', where=_on("getSeries"))
    with (
        tampering(emu.base_url, tamper) as (url, plan),
        pytest.raises(ApiProtocolError, match=r"v4/getSeries: a row lacks SeriesInstanceUID"),
    ):
        _client(url).series()
    assert len(plan.served) == 4


def test_a_csv_answer_with_a_128_kib_field_is_a_protocol_error_not_a_crash(
    emu: Emulator,
) -> None:
    uid = _a_series(emu)
    body = f'"Series ID","Collection Name"\n"{uid}","{HUGE}"\n'.encode()
    tamper = first_times(-1, body, where=_on("getSeriesMetadata2"))
    with tampering(emu.base_url, tamper) as (url, _plan), pytest.raises(ApiProtocolError) as caught:
        _client(url, api="v2", credentials=ALICE).series_metadata([uid])
    assert "getSeriesMetadata2" in str(caught.value) and len(str(caught.value)) < 500


# -- md5hashes.csv ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("csv_text", "why"),
    [
        (f"Filename,MD5Hash\n00000001.dcm,{HUGE}\n", "128 KiB field"),
        (f'Filename,MD5Hash\n"00000001.dcm,{HUGE}\n', "runaway quoted field"),
        ("Filename,MD5Hash\n00000001.dcm,abc\x00def\n", "NUL byte"),
        ("Name,Hash\n00000001.dcm,d41d8cd98f00b204e9800998ecf8427e\n", "header"),
        ("Filename,MD5Hash\n00000001.dcm,<html>\n", "not an MD5"),
        ("Filename,MD5Hash\n00000001.dcm,a,b\n", "three fields"),
    ],
)
def test_md5hashes_csv_is_read_by_its_documented_shape(csv_text: str, why: str) -> None:
    from nbia_audit.client.shapes import md5_csv

    with pytest.raises(ApiProtocolError) as caught:
        md5_csv(csv_text)
    assert str(caught.value).startswith("md5hashes.csv") and len(str(caught.value)) < 300, why


def test_md5hashes_csv_keeps_every_documented_value() -> None:
    from nbia_audit.client.shapes import md5_csv

    text = "Filename,MD5Hash\na.dcm,d41d8cd98f00b204e9800998ecf8427e\nb.dcm,\nc.dcm, \nd.dcm,abc\n"
    assert md5_csv(text) == {
        "a.dcm": "d41d8cd98f00b204e9800998ecf8427e",
        "b.dcm": None,
        "c.dcm": " ",
        "d.dcm": "abc",
    }


def _with_huge_csv_field(zip_bytes: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "md5hashes.csv":
                lines = data.decode().splitlines()
                name = lines[1].split(",")[0]
                data = "\n".join([lines[0], f"{name},{HUGE}", *lines[2:]]).encode() + b"\n"
            dst.writestr(info.filename, data)
    return out.getvalue()


def test_a_huge_md5hashes_field_fails_that_series_only(tmp_path: Path) -> None:
    from tests.support.client import SPEC

    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(tmp_path / "lock", emu)
        victim = _a_series(emu)
        original = requests.get(
            f"{emu.base_url}/v4/getImageWithMD5Hash",
            params={"SeriesInstanceUID": victim},
            timeout=10,
        ).content
        evil = _with_huge_csv_field(original)

        def replace(path: str) -> bytes | None:
            return evil if "getImageWithMD5Hash" in path and victim in path else None

        dest = tmp_path / "data"
        with proxy(emu.base_url, replace) as url, client_for(url) as client:
            report = fetch_dataset(lock, dest, client, retry=FAST_SERIES)
        assert {s.series_uid for s in report.failed} == {victim}
        assert "md5hashes.csv is not a readable CSV (line 2" in report.failed[0].reasons[0]
        others = {s.series_uid for s in emu.corpus.series} - {victim}
        assert tree(dest) == classic_paths(emu, others)


# -- lock: one bad answer fails the run with a clear message, never a traceback --------------------


def test_lock_with_a_maintenance_page_for_one_series_hash_exits_3_naming_it(
    tmp_path: Path, emu: Emulator
) -> None:
    victim = _a_series(emu)
    collection = next(s.collection for s in emu.corpus.series if s.series_uid == victim)
    tamper = first_times(-1, MAINTENANCE, where=_on("getMD5Hierarchy", victim))
    with tampering(emu.base_url, tamper) as (url, _plan):
        spec = tmp_path / "dataset.yaml"
        spec.write_text(f"name: t\nserver: {url}\nselect:\n  - collection: {collection}\n")
        result = run_cli("lock", spec, "--quiet")
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert "Traceback" not in result.stderr
    assert "v4/getMD5Hierarchy" in result.stderr and victim in result.stderr
    assert "Down for maintenance" in result.stderr
    assert not (tmp_path / "dataset.lock").exists()


# -- an unfiltered image listing of a hidden series ------------------------------------------------


def test_listed_images_without_md5s_are_a_visibility_problem_not_a_change(emu: Emulator) -> None:
    """The real v4 getSOPInstanceUIDs lists a hidden series' images (no visibility filter), whose
    per-image MD5s then come back empty; the emulator filters, so the proxy answers unfiltered."""
    import json

    from nbia_audit.archive.view import ArchiveView
    from nbia_audit.lock.pin import pin_series

    selected = {s.series_uid: s for s in make_client(emu).series()}
    victim = sorted(selected)[0]
    emu.hide_series(victim)
    listing = json.dumps([{"SOPInstanceUID": i.sop_uid} for i in emu.corpus.images_of(victim)])
    tamper = first_times(-1, listing.encode(), where=_on("getSOPInstanceUIDs", victim))
    with tampering(emu.base_url, tamper) as (url, _plan):
        pins = pin_series(selected, ArchiveView(_client(url)))
    assert pins.unsettled == () and pins.not_visible == (victim,)
    about_victim = [p for p in pins.problems if p.series_uid == victim]
    assert [p.kind for p in about_victim] == ["images-not-visible"]
    assert "hidden or not accessible" in about_victim[0].detail
    assert "not removed" in about_victim[0].detail


def test_lock_refuses_to_write_when_listed_images_have_no_md5s(
    tmp_path: Path, emu: Emulator
) -> None:
    """As above, through the lock verb: the proxy also keeps listing the series (as a DOI or
    a manifest selection would on the real archive). Nothing is written, exit 1, and the
    message says hidden or inaccessible, not removed."""
    import json

    collection = emu.corpus.collections[0].name
    listing = make_client(emu).series(collection=collection)
    victim = sorted(s.series_uid for s in listing)[0]
    genuine_series = requests.get(
        f"{emu.base_url}/v4/getSeries", params={"Collection": collection}, timeout=10
    ).content
    emu.hide_series(victim)
    sops = json.dumps([{"SOPInstanceUID": i.sop_uid} for i in emu.corpus.images_of(victim)])

    def tamper(path: str, sent: bytes) -> bytes | None:
        if "/getSeries?" in path:
            return genuine_series
        if "getSOPInstanceUIDs" in path and victim in path:
            return sops.encode()
        return None

    with tampering(emu.base_url, tamper) as (url, _plan):
        spec = tmp_path / "dataset.yaml"
        spec.write_text(f"name: t\nserver: {url}\nselect:\n  - collection: {collection}\n")
        result = run_cli("lock", spec, "--quiet")
    assert result.exit_code == ExitCode.FINDINGS, result.output
    assert "Not written (no lock)" in result.stderr and "not removed" in result.stderr
    assert f"series {victim}: getSOPInstanceUIDs listed 3 image(s)" in result.stderr
    assert "unsettled" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "dataset.lock").exists()


def test_lock_refuses_to_write_while_a_series_hash_keeps_disagreeing_with_its_images(
    tmp_path: Path, emu: Emulator
) -> None:
    """An archive whose series hash never agrees with the image MD5s it lists (a series being
    rewritten while asked): every round asks again, then nothing is written, exit 1, and the
    series is named as unsettled; a lock that was there is left as it was."""
    victim = _a_series(emu)
    collection = next(s.collection for s in emu.corpus.series if s.series_uid == victim)
    spec = tmp_path / "dataset.yaml"
    spec.write_text(f"name: t\nserver: {emu.base_url}\nselect:\n  - collection: {collection}\n")
    assert run_cli("lock", spec, "--quiet").exit_code == ExitCode.CLEAN
    before = (tmp_path / "dataset.lock").read_bytes()
    moving = first_times(-1, b"0" * 32, where=_on("getMD5Hierarchy", victim))
    with tampering(emu.base_url, moving) as (url, _plan):
        spec.write_text(f"name: t\nserver: {url}\nselect:\n  - collection: {collection}\n")
        result = run_cli("lock", spec, "--quiet")
    assert result.exit_code == ExitCode.FINDINGS, result.output
    assert f"Not written ({tmp_path / 'dataset.lock'} is left as it was)" in result.stderr
    assert "times running, so their hash and image MD5s never agreed" in result.stderr
    assert f"  unsettled series {victim}" in result.stderr
    assert (tmp_path / "dataset.lock").read_bytes() == before


# -- any bytes at all ------------------------------------------------------------------------------

_CSVISH = st.text(alphabet=st.sampled_from('ab,"\r\n\x00 f0.dcmFilename,MD5Hash'), max_size=300)


@settings(deadline=None, max_examples=300)
@given(text=st.one_of(_CSVISH, st.text(max_size=200)), huge=st.booleans())
def test_csv_readers_raise_nothing_but_a_protocol_error(text: str, huge: bool) -> None:
    from nbia_audit.client.parse import decode_csv_rows
    from nbia_audit.client.shapes import md5_csv

    if huge:
        text = text + '"' + "f" * (140 * 1024)
    for read in (lambda: md5_csv("Filename,MD5Hash\n" + text), lambda: md5_csv(text)):
        try:
            read()
        except ApiProtocolError as exc:
            assert len(str(exc)) < 400
    try:
        decode_csv_rows(text.encode(), "getSeriesMetadata2")
    except ApiProtocolError as exc:
        assert len(str(exc)) < 400


@settings(deadline=None, max_examples=300)
@given(body=st.binary(max_size=200))
def test_hash_answers_are_a_documented_form_or_a_protocol_error(body: bytes) -> None:
    from nbia_audit.client.shapes import hierarchy_hash, image_md5

    for read in (hierarchy_hash, image_md5):
        try:
            value = read(body, "endpoint")
        except ApiProtocolError as exc:
            assert str(exc).startswith("endpoint: the server answered HTTP 200")
        else:
            assert value in ("", " ") or all(c in "0123456789abcdefABCDEF" for c in value)


def test_lock_names_every_series_whose_answers_were_bad(tmp_path: Path, emu: Emulator) -> None:
    collection = emu.corpus.collections[0].name
    uids = sorted(s.series_uid for s in emu.corpus.series if s.collection == collection)
    victims = uids[:2]
    assert len(victims) == 2

    def tamper(path: str, sent: bytes) -> bytes | None:
        asked = path + sent.decode()
        if "getSOPInstanceUIDs" in path and any(v in asked for v in victims):
            return MAINTENANCE
        return None

    with tampering(emu.base_url, tamper) as (url, _plan):
        spec = tmp_path / "dataset.yaml"
        spec.write_text(f"name: t\nserver: {url}\nselect:\n  - collection: {collection}\n")
        result = run_cli("lock", spec, "--quiet")
    assert result.exit_code == ExitCode.ENVIRONMENT, result.output
    assert "could not pin 2 series (image lists)" in result.stderr
    assert all(v in result.stderr for v in victims) and "Traceback" not in result.stderr
    assert not (tmp_path / "dataset.lock").exists()


@pytest.mark.parametrize(
    ("endpoint", "key"),
    [
        ("getSeries", "SeriesInstanceUID"),
        ("getSOPInstanceUIDs", "SOPInstanceUID"),
        ("getPatientStudy", "StudyInstanceUID"),
    ],
)
def test_a_huge_uid_in_a_listing_is_refused_before_it_is_used(
    emu: Emulator, endpoint: str, key: str
) -> None:
    import json

    genuine = make_client(emu)
    uid = _a_series(emu)
    rows = {
        "getSeries": lambda: [{"SeriesInstanceUID": "A" * (128 * 1024), "Modality": "CT"}],
        "getSOPInstanceUIDs": lambda: [{"SOPInstanceUID": "1." + "2" * (128 * 1024)}],
        "getPatientStudy": lambda: [{"StudyInstanceUID": "<script>x</script>"}],
    }[endpoint]()
    tamper = first_times(-1, json.dumps(rows).encode(), where=_on(endpoint))
    ask: dict[str, Callable[[NbiaClient], object]] = {
        "getSeries": lambda c: c.series(),
        "getSOPInstanceUIDs": lambda c: c.sop_instance_uids(uid),
        "getPatientStudy": lambda c: c.studies(),
    }
    with tampering(emu.base_url, tamper) as (url, plan), pytest.raises(ApiProtocolError) as caught:
        ask[endpoint](_client(url))
    message = str(caught.value)
    assert f"{key} " in message and "is not a DICOM UID" in message
    assert "\n" not in message and len(message) < 600
    assert len(plan.served) == 4
    assert ask[endpoint](genuine)  # the emulator's own answer passes


def test_a_multi_line_error_page_reaches_the_message_as_one_short_line(emu: Emulator) -> None:
    page = b"<html>\n<head><title>414 Request-URI Too Large</title></head>\n" + b"<p>x</p>\n" * 400

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            return

        def do_GET(self) -> None:
            self.send_response(414)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/nbia-api/services"
        with pytest.raises(ApiError) as caught:
            _client(url).series()
    finally:
        server.shutdown()
        server.server_close()
    message = str(caught.value)
    assert "414 Request-URI Too Large" in message
    assert "\n" not in message and len(message) < 700

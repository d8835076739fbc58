"""Injected faults and the request log."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
import requests

from nbia_audit.emulator import CorpusSpec, Emulator, Fault, build_corpus
from nbia_audit.emulator.folder import write_corpus
from nbia_audit.emulator.model import FileSource

SMALL = CorpusSpec(seed=1, collections=1, patients=1, series=1, images=1)


def series_url(
    emu: Emulator, endpoint: str = "v4/getImageWithMD5Hash"
) -> tuple[str, dict[str, str]]:
    return f"{emu.base_url}/{endpoint}", {"SeriesInstanceUID": emu.corpus.series[0].series_uid}


def test_status_fault_limited_to_an_endpoint_and_a_count(
    emulator: Emulator, http: requests.Session
) -> None:
    emulator.add_fault(Fault("status", status=503, endpoint="getSeries", times=2))
    url = f"{emulator.base_url}/v4/getSeries"
    assert http.get(f"{emulator.base_url}/v4/getCollectionValues").status_code == 200
    assert [http.get(url).status_code for _ in range(3)] == [503, 503, 200]
    assert emulator.faults == ()


def test_rate_limit_carries_retry_after(emulator: Emulator, http: requests.Session) -> None:
    emulator.add_fault(Fault("rate_limit", retry_after=7, times=1))
    response = http.get(f"{emulator.base_url}/v4/getSeries")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert http.get(f"{emulator.base_url}/v4/getSeries").status_code == 200


def test_latency(emulator: Emulator, http: requests.Session) -> None:
    emulator.add_fault(Fault("latency", delay=0.2, endpoint="getSeries"))
    start = time.perf_counter()
    http.get(f"{emulator.base_url}/v4/getSeries")
    assert time.perf_counter() - start >= 0.2
    # That the delay is gone once cleared is asserted on the fault plan, not by timing a
    # request: a loaded machine can make any request slower than 0.2 s.
    emulator.clear_faults()
    assert emulator.faults == ()
    assert http.get(f"{emulator.base_url}/v4/getSeries").status_code == 200


def test_reset_closes_without_a_response(emulator: Emulator, http: requests.Session) -> None:
    emulator.add_fault(Fault("reset", times=1))
    with pytest.raises(requests.ConnectionError):
        http.get(f"{emulator.base_url}/v4/getSeries")
    assert http.get(f"{emulator.base_url}/v4/getSeries").status_code == 200
    assert emulator.requests[0].status == 0


def test_truncate_cuts_a_chunked_download(emulator: Emulator, http: requests.Session) -> None:
    emulator.add_fault(Fault("truncate", after_bytes=1000, endpoint="getImageWithMD5Hash", times=1))
    url, params = series_url(emulator)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(url, params=params)
    assert zipfile.ZipFile(io.BytesIO(http.get(url, params=params).content)).testzip() is None


def test_truncate_cuts_an_ordinary_body(emulator: Emulator, http: requests.Session) -> None:
    emulator.add_fault(Fault("truncate", after_bytes=10, endpoint="getSeries", times=1))
    # requests reports a body shorter than its Content-Length as a ChunkedEncodingError.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(f"{emulator.base_url}/v4/getSeries")


def test_drop_images_gives_a_well_formed_but_short_zip(
    emulator: Emulator, http: requests.Session
) -> None:
    emulator.add_fault(Fault("drop_images", count=1, times=1))
    url, params = series_url(emulator)
    short = zipfile.ZipFile(io.BytesIO(http.get(url, params=params).content))
    assert short.testzip() is None
    assert short.namelist() == ["00000001.dcm", "00000002.dcm"]  # no md5hashes.csv either
    full = zipfile.ZipFile(io.BytesIO(http.get(url, params=params).content)).namelist()
    assert full[-1] == "md5hashes.csv" and len(full) == 4
    # getImage keeps its LICENSE.
    emulator.add_fault(Fault("drop_images", count=2, endpoint="getImage"))
    url, params = series_url(emulator, "v4/getImage")
    names = zipfile.ZipFile(
        io.BytesIO(http.get(url, params={**params, "IncludeMD5": "yes"}).content)
    ).namelist()
    assert names == ["LICENSE", "00000001.dcm"]


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault("status", times=0)


def test_request_log_counts_requests(emulator: Emulator, http: requests.Session) -> None:
    http.get(f"{emulator.base_url}/v4/getSeries", params={"Collection": "EMU-LUNG"})
    http.post(f"{emulator.base_url}/v4/getMD5Hierarchy", data={"Collection": "EMU-LUNG"})
    http.get(f"{emulator.root_url}/v1/getCollectionValues", headers={"Authorization": "Bearer x"})
    records = emulator.requests
    assert emulator.request_count == 3
    assert [(r.method, r.endpoint, r.family, r.status, r.token_sent) for r in records] == [
        ("GET", "getSeries", "v4", 200, False),
        ("POST", "getMD5Hierarchy", "v4", 200, False),
        ("GET", "getCollectionValues", "v1", 200, True),
    ]
    assert records[0].params == (("Collection", "EMU-LUNG"),)
    assert records[2].path == "/nbia-api/v1/getCollectionValues"  # the servlet's second mapping
    emulator.reset_request_log()
    assert emulator.request_count == 0


def test_keep_alive_reuses_one_connection(emulator: Emulator, http: requests.Session) -> None:
    url, params = series_url(emulator)
    first = http.get(f"{emulator.base_url}/v4/getSeries")
    assert "Content-Length" in first.headers
    http.get(url, params=params)
    http.get(f"{emulator.base_url}/v4/getSeries")
    assert len({r.client_port for r in emulator.requests}) == 1


def test_stop_cuts_pooled_connections(http: requests.Session) -> None:
    emu = Emulator.from_spec(SMALL).start()
    url = f"{emu.base_url}/v4/getSeries"
    assert http.get(url).status_code == 200
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(url, timeout=5)
    with pytest.raises(RuntimeError):
        emu.base_url  # noqa: B018 - the property raises once stopped


def test_missing_file_on_disk_gives_a_short_zip(tmp_path: Path, http: requests.Session) -> None:
    write_corpus(
        build_corpus(CorpusSpec(seed=1, collections=1, patients=1, series=1, images=3)), tmp_path
    )
    with Emulator.from_folder(tmp_path) as emu:
        uid = emu.corpus.series[0].series_uid
        doomed = emu.corpus.images_of(uid)[1]
        assert isinstance(doomed.source, FileSource)
        doomed.source.path.unlink()
        response = http.get(
            f"{emu.base_url}/v4/getImageWithMD5Hash", params={"SeriesInstanceUID": uid}
        )
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        assert archive.testzip() is None and archive.namelist() == ["00000001.dcm"]

"""Injected faults and NBIA's error shapes (protocol §8) against the emulator: retries with
recorded backoff, Retry-After, resets, timeouts, truncated and incomplete downloads."""

from __future__ import annotations

import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.client import NbiaClient, RetryPolicy, Timeouts
from nbia_audit.client.core import Auth, Route
from nbia_audit.emulator import Emulator, Fault
from nbia_audit.errors import (
    ApiBadRequest,
    ApiServerError,
    ApiUnavailable,
    DownloadError,
)
from tests.support.client import ALICE, FakeClock, Sleeps, calls, make_client, running_emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fresh emulator per test: faults never leak between tests."""
    yield from running_emulator()


def _first_series(emulator: Emulator) -> str:
    return sorted(s.series_uid for s in make_client(emulator).series())[0]


# -- retries ---------------------------------------------------------------------------------------


def test_5xx_is_retried_with_full_jitter_backoff(emu: Emulator) -> None:
    sleeps = Sleeps()
    client = make_client(emu, sleeps=sleeps)
    emu.add_fault(Fault("status", status=503, endpoint="getSeries", times=2))
    assert client.series()
    assert [r.status for r in calls(emu, "getSeries")] == [503, 503, 200]
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.2 and 0 <= sleeps.delays[1] <= 0.4  # base 0.2, doubling


def test_persistent_500_becomes_a_server_error_after_every_attempt(emu: Emulator) -> None:
    sleeps = Sleeps()
    client = make_client(emu, sleeps=sleeps)
    emu.add_fault(Fault("status", status=500, endpoint="getSeriesSize"))
    with pytest.raises(ApiServerError) as caught:
        client.series_size("1.2.3")
    error = caught.value
    assert (error.status, error.endpoint) == (500, "v4/getSeriesSize")
    assert error.server_message == "Injected fault: HTTP 500"
    assert "4 attempts" in str(error)
    assert len(calls(emu, "getSeriesSize")) == 4 and len(sleeps.delays) == 3


def test_the_servers_own_500_text_is_kept(emu: Emulator) -> None:
    client = make_client(emu, retry=RetryPolicy(attempts=2, base=0.0))
    # Unversioned getMD5Hierarchy without a header: the old getData's NullPointerException.
    with pytest.raises(ApiServerError) as caught:
        client._caller.fetch(Route("getMD5Hierarchy", "POST", auth=Auth.NEVER), data={})
    assert caught.value.server_message.startswith("Server was not able to process your request")
    with pytest.raises(ApiServerError, match="Server was not able"):
        client._caller.fetch(Route("v4/getSeries"), params={"format": "yaml"})


def test_429_honours_retry_after(emu: Emulator) -> None:
    sleeps = Sleeps()
    client = make_client(emu, sleeps=sleeps)
    emu.add_fault(Fault("rate_limit", retry_after=3, times=1))
    assert client.collections()
    assert sleeps.delays == [3.0]


def test_retry_after_is_capped(emu: Emulator) -> None:
    sleeps = Sleeps()
    client = make_client(emu, sleeps=sleeps, retry=RetryPolicy(attempts=3, retry_after_cap=0.5))
    emu.add_fault(Fault("rate_limit", retry_after=3600, times=2))
    assert client.collections()
    assert sleeps.delays == [0.5, 0.5]


def test_endless_429_is_unavailable(emu: Emulator) -> None:
    emu.add_fault(Fault("rate_limit", retry_after=1))
    with pytest.raises(ApiUnavailable, match="429"):
        make_client(emu).collections()
    assert len(calls(emu, "getCollectionValues")) == 4


def test_connection_reset_is_retried(emu: Emulator) -> None:
    client = make_client(emu)
    emu.add_fault(Fault("reset", endpoint="getCollectionValues", times=2))
    assert client.collections()
    assert [r.status for r in calls(emu, "getCollectionValues")] == [0, 0, 200]


def test_endless_resets_are_unavailable(emu: Emulator) -> None:
    emu.add_fault(Fault("reset", endpoint="getCollectionValues"))
    with pytest.raises(ApiUnavailable, match="4 attempts") as caught:
        make_client(emu).collections()
    assert isinstance(caught.value.__cause__, Exception)  # the requests error, chained


def test_a_slow_answer_times_out_and_is_retried(emu: Emulator) -> None:
    sleeps = Sleeps()
    # The read timeout is long enough that only the delayed answer exceeds it, even on a
    # loaded machine (0.1 s was not: any slow answer was a second timeout); the delay is
    # longer still, so the delayed one always does.
    client = make_client(emu, sleeps=sleeps, timeouts=Timeouts(connect=5.0, read=1.0))
    emu.add_fault(Fault("latency", delay=1.5, endpoint="getSeries", times=1))
    assert client.series()
    assert len(sleeps.delays) == 1  # one read timeout, one retry


def test_small_latency_is_harmless(emu: Emulator) -> None:
    emu.add_fault(Fault("latency", delay=0.02))
    client = make_client(emu)
    assert client.series() and client.collections()


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the client connects
    sleeps = Sleeps()
    client = NbiaClient(f"http://127.0.0.1:{port}/nbia-api", sleep=sleeps, clock=FakeClock(),
                        retry=RetryPolicy(attempts=3, base=0.01))  # fmt: skip
    with pytest.raises(ApiUnavailable, match="127.0.0.1") as caught:
        client.collections()
    assert "3 attempts" in str(caught.value) and len(sleeps.delays) == 2


def test_the_token_endpoint_is_retried_too(emu: Emulator) -> None:
    emu.add_fault(Fault("status", status=502, endpoint="token", times=1))
    assert make_client(emu, api="v2", credentials=ALICE).collections()
    assert [r.status for r in calls(emu, "token")] == [502, 200]


def test_creating_a_cart_is_not_retried_after_a_server_error(emu: Emulator) -> None:
    uid = _first_series(emu)
    emu.add_fault(Fault("status", status=503, endpoint="createSharedList", times=1))
    with pytest.raises(ApiServerError):
        make_client(emu).create_shared_list("cart", [uid])
    assert len(calls(emu, "createSharedList")) == 1


# -- NBIA's error shapes ---------------------------------------------------------------------------


def test_400_plain_text_labelled_json_becomes_a_bad_request(emu: Emulator) -> None:
    client = make_client(emu)
    with pytest.raises(ApiBadRequest) as caught:
        client._caller.fetch(Route("v4/getSeries"), params={"Bogus": "1"})
    error = caught.value
    assert error.endpoint == "v4/getSeries" and error.status == 400
    assert error.server_message.startswith("Invalid query parameter: 'Bogus'")
    assert str(error).startswith(
        "v4/getSeries: the server rejected the request (HTTP 400): Invalid"
    )
    assert len(calls(emu, "getSeries")) == 1  # a 400 is never retried


def test_a_missing_required_parameter_is_a_bad_request(emu: Emulator) -> None:
    with pytest.raises(ApiBadRequest, match="SeriesInstanceUID is required") as caught:
        make_client(emu)._caller.fetch(Route("v4/getSeriesSize"))
    assert caught.value.endpoint == "v4/getSeriesSize"


# -- downloads -------------------------------------------------------------------------------------


def test_a_truncated_download_is_restarted(emu: Emulator, tmp_path: Path) -> None:
    uid = _first_series(emu)
    progress: list[int] = []
    emu.add_fault(Fault("truncate", after_bytes=1000, endpoint="getImageWithMD5Hash", times=1))
    result = make_client(emu, download_chunk_size=256).download_series(
        uid, tmp_path / "s.zip", on_bytes=progress.append
    )
    assert result.attempts == 2 and result.has_md5_csv
    assert min(progress) < 0  # the abandoned attempt's bytes were taken back
    assert sum(progress) == result.bytes_received == (tmp_path / "s.zip").stat().st_size
    with zipfile.ZipFile(result.path) as archive:
        assert archive.testzip() is None


def test_a_download_that_keeps_breaking_is_a_download_error(emu: Emulator, tmp_path: Path) -> None:
    uid = _first_series(emu)
    emu.add_fault(Fault("truncate", after_bytes=500, endpoint="getImageWithMD5Hash"))
    with pytest.raises(DownloadError, match="4 attempts") as caught:
        make_client(emu).download_series(uid, tmp_path / "s.zip")
    assert uid in str(caught.value)
    assert len(calls(emu, "getImageWithMD5Hash")) == 4


def test_a_reset_before_the_download_starts_is_retried(emu: Emulator, tmp_path: Path) -> None:
    uid = _first_series(emu)
    emu.add_fault(Fault("reset", endpoint="getImageWithMD5Hash", times=1))
    assert make_client(emu).download_series(uid, tmp_path / "s.zip").has_md5_csv


def test_a_zip_missing_images_is_returned_as_received(emu: Emulator, tmp_path: Path) -> None:
    uid = _first_series(emu)
    emu.add_fault(Fault("drop_images", count=1, times=1))
    client = make_client(emu)
    result = client.download_series(uid, tmp_path / "s.zip")
    size = client.series_size(uid)
    assert size is not None
    assert result.attempts == 1 and not result.has_md5_csv
    assert len(result.image_entries) == size.objects - 1  # the fetch layer's finding to make


def test_an_unwritable_destination_is_a_download_error(emu: Emulator, tmp_path: Path) -> None:
    uid = _first_series(emu)
    with pytest.raises(DownloadError, match="cannot write"):
        make_client(emu).download_series(uid, tmp_path / "missing-dir" / "s.zip")

"""The emulator's own CLI: bad options and an unreachable or busy port are one-line errors with
exit 2 (usage) or 3 (environment), never a traceback."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.support.cli import run_cli


def invoke(*args: str) -> Result:
    return run_cli("emulator", *args)


def assert_clean_error(result: Result, code: int, *words: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_on_a_port_in_use_is_an_environment_error(busy_port: int) -> None:
    result = invoke("serve", "--port", str(busy_port))
    assert_clean_error(result, 3, f"cannot listen on 127.0.0.1:{busy_port}", "in use", "--port")


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_on_an_impossible_port_is_a_usage_error(port: str) -> None:
    assert_clean_error(invoke("serve", "--port", port), 2, "--port")


@pytest.mark.parametrize(
    "option", ["--collections", "--patients", "--studies", "--series", "--images"]
)
def test_negative_counts_are_refused(tmp_path: Path, option: str) -> None:
    assert_clean_error(invoke("build", "--out", str(tmp_path / "out"), option, "-3"), 2, option)
    assert_clean_error(invoke("serve", option, "-3"), 2, option)


def test_more_restricted_than_collections_is_refused(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    result = invoke("build", "--out", out, "--collections", "1", "--restricted", "2")
    assert_clean_error(result, 2, "--restricted")


def test_mutate_and_fault_against_a_stopped_server_are_environment_errors(
    closed_port: int,
) -> None:
    url = f"http://127.0.0.1:{closed_port}/nbia-api/services"
    assert_clean_error(
        invoke("mutate", url, "run_nightly_job"),
        3,
        f"nothing answers at http://127.0.0.1:{closed_port}",
    )
    assert_clean_error(invoke("fault", url, "clear"), 3, "nothing answers at")
    assert_clean_error(invoke("fault", url, "latency", "--delay", "1"), 3, "emulator serve")


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


def test_mutate_against_a_server_that_is_not_an_emulator() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert_clean_error(
            invoke("mutate", url, "run_nightly_job"), 3, "not an nbia-audit emulator"
        )
    finally:
        server.shutdown()
        server.server_close()


def test_mutate_with_a_non_numeric_images_argument_is_a_usage_error(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/"
    result = invoke("mutate", url, "add_series", "--arg", "images=many")
    assert_clean_error(result, 2, "images must be a whole number")


@pytest.mark.parametrize(
    ("option", "value"),
    [("--times", "-1"), ("--times", "0"), ("--delay", "-2"), ("--status", "42"), ("--count", "-1")],
)
def test_fault_options_out_of_range_are_usage_errors(
    closed_port: int, option: str, value: str
) -> None:
    url = f"http://127.0.0.1:{closed_port}/"
    assert_clean_error(invoke("fault", url, "latency", option, value), 2, option)


def test_build_into_an_unwritable_place_is_an_environment_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = invoke("build", "--out", str(blocker / "out"), "--collections", "1")
    assert_clean_error(result, 3, f"cannot write {blocker / 'out'}")


@pytest.mark.parametrize("url", ["notaurl", "file:///etc/passwd", "ftp://example/x"])
def test_mutate_with_a_url_that_is_not_http_is_a_usage_error(url: str) -> None:
    assert_clean_error(invoke("mutate", url, "run_nightly_job"), 2, "is not an emulator URL")


def test_an_impossible_image_size_is_a_usage_error() -> None:
    assert_clean_error(invoke("serve", "--image-bytes", "100000000000"), 2, "--image-bytes")


def test_a_huge_added_series_is_refused_and_the_emulator_keeps_answering() -> None:
    from nbia_audit.emulator import CorpusSpec, Emulator

    with Emulator.from_spec(CorpusSpec(seed=1, collections=1, patients=1, series=1)) as emu:
        result = invoke("mutate", emu.base_url, "add_series", "--arg", "images=100000000")
        assert_clean_error(result, 2, "images must be 0 to 10,000")
        assert invoke("mutate", emu.base_url, "run_nightly_job").exit_code == 0

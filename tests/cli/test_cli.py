"""The command line: every documented exit code, messages without tracebacks, the demo."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nbia_audit.cli.common import EXIT_CODE_HELP, ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from tests.support.cli import run_cli
from tests.support.spec import BAD_SPECS

SPEC = CorpusSpec(seed=5, collections=1, patients=2, studies=1, series=2, images=2)


def run(*args: str) -> tuple[int, str, str]:
    result = run_cli(*args)
    return result.exit_code, result.stdout, result.stderr


def spec_for(tmp_path: Path, server: str, collection: str = "EMU-BRAIN") -> Path:
    path = tmp_path / "dataset.yaml"
    path.write_text(f"name: t\nserver: {server}\nselect:\n  - collection: {collection}\n")
    return path


def test_lock_then_check_exit_codes(tmp_path: Path, emu: Emulator) -> None:
    collection = emu.corpus.collections[0].name
    spec = spec_for(tmp_path, emu.base_url, collection)
    code, out, _ = run("lock", str(spec), "--quiet")
    assert code == ExitCode.CLEAN and "Wrote" in out and "root sha256:" in out
    code, out, _ = run("lock", "--check", str(spec))
    assert code == ExitCode.CLEAN and "up to date" in out
    code, out, _ = run("lock", "--check", "--offline", str(spec))
    assert code == ExitCode.CLEAN
    series = emu.corpus.series[0].series_uid
    emu.replace_image(emu.corpus.images_of(series)[0].sop_uid)
    code, out, _ = run("lock", "--check", str(spec))
    assert code == ExitCode.FINDINGS and series in out and "stale" in out
    code, out, _ = run("lock", str(spec))
    assert code == ExitCode.CLEAN and out.startswith("Kept") and f"~ series {series}" in out


def test_bad_spec_is_exit_2_with_file_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "dataset.yaml"
    spec.write_text("name: t\nselect:\n  - colection: X\n")
    code, out, err = run("lock", str(spec))
    assert code == ExitCode.USAGE
    assert f"{spec}:3: select[0].colection: unknown key" in err
    assert "Traceback" not in out + err


def test_unknown_option_is_exit_2() -> None:
    code, _, _ = run("lock", "--no-such-flag", "x.yaml")
    assert code == ExitCode.USAGE


def test_unreachable_archive_is_exit_3(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = spec_for(tmp_path, f"http://127.0.0.1:{port}/nbia-api/services")
    code, out, err = run("lock", str(spec), "--quiet")
    assert code == ExitCode.ENVIRONMENT
    assert "error:" in err and "Traceback" not in out + err
    assert not (tmp_path / "dataset.lock").exists()


def test_help_lists_exit_codes() -> None:
    code, out, _ = run("--help")
    assert code == 0 and EXIT_CODE_HELP.replace("\b\n", "").splitlines()[1].strip() in out
    for command in ("lock", "demo", "emulator"):
        assert command in out


def test_demo_passes_and_says_where_files_are(tmp_path: Path) -> None:
    code, out, _ = run("demo", "--dir", str(tmp_path / "demo"))
    assert code == ExitCode.CLEAN, out
    assert "Demo passed" in out and "FAIL" not in out
    assert (tmp_path / "demo" / "dataset.lock").exists()
    assert str(tmp_path / "demo") in out


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [(case[1], case[2], case[3]) for case in BAD_SPECS],
    ids=[case[0] for case in BAD_SPECS],
)
def test_every_bad_spec_exits_2_naming_file_line_and_key(
    tmp_path: Path, text: str, line: int | None, key: str | None
) -> None:
    spec = tmp_path / "dataset.yaml"
    spec.write_text(text, encoding="utf-8")
    code, out, err = run("lock", str(spec), "--quiet")
    assert code == ExitCode.USAGE
    where = f"{spec}:{line}: " if line is not None else f"{spec}: "
    assert err.startswith(f"nbia-audit: error: {where}"), err
    if key is not None:
        assert f" {key}: " in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "dataset.lock").exists()


def test_demo_runs_again_in_the_same_folder_and_refuses_a_foreign_one(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert run("demo", "--dir", str(folder))[0] == ExitCode.CLEAN
    code, out, _ = run("demo", "--dir", str(folder))
    assert code == ExitCode.CLEAN and "Demo passed" in out
    (folder / "my-notes.txt").write_text("mine")
    code, _, err = run("demo", "--dir", str(folder))
    assert code == ExitCode.USAGE and "my-notes.txt" in err
    assert (folder / "my-notes.txt").read_text() == "mine"

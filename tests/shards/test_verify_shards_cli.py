"""`nbia-audit verify --shard K/N --shard-dir RUN` and `--merge RUN`: exit codes, refusals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbia_audit.cli.common import ExitCode
from nbia_audit.emulator import CorpusSpec, Emulator
from tests.support.cli import run_cli
from tests.support.verify import (
    backdate,
    download_all,
    flip_bit_keep_mtime,
    image_files,
    make_lock,
    materialise,
)

SPEC = CorpusSpec(seed=14, collections=1, patients=2, studies=1, series=2, images=2)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    base = tmp_path_factory.mktemp("shardcli")
    with Emulator.from_spec(SPEC) as emu:
        lock = make_lock(base / "lock", emu)
        root = base / "copy"
        materialise(emu, download_all(emu, base / "zips"), root, "ours")
        backdate(root)
        other = make_lock(base / "other-lock", emu, series_only=True)
    yield lock, root, other


def run(*args: object) -> tuple[int, str, str]:
    result = run_cli("verify", *args)
    return result.exit_code, result.stdout, result.stderr


def shards(lock: Path, root: Path, run_dir: Path, count: int, *extra: object) -> None:
    for index in range(1, count + 1):
        code, out, err = run(lock, root, "--shard", f"{index}/{count}", "--shard-dir", run_dir,
                             *extra)  # fmt: skip
        assert code == ExitCode.CLEAN, err
        assert f"verify shard {index}/{count}:" in out
        assert (run_dir / f"verify-{index}-of-{count}.db").is_file()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary left


def test_shards_then_merge_give_the_verdict_and_exit_code_of_one_run(
    made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    lock, pristine, _ = made
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    flip_bit_keep_mtime(next(image_files(root)))
    shards(lock, root, tmp_path / "run", 3)
    code, out, _ = run(lock, root, "--merge", tmp_path / "run", "--format", "json")
    assert code == ExitCode.FINDINGS
    merged = json.loads(out)
    assert merged["counts"] == {"modified": 1}
    assert merged["facts"]["merged_from_shards"] == 3
    code, out, _ = run(lock, root, "--format", "json")
    one = json.loads(out)
    assert code == ExitCode.FINDINGS
    assert merged["findings"] == one["findings"] and merged["series"] == one["series"]


def test_a_missing_shard_makes_the_merge_exit_3_naming_it(
    made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    lock, root, _ = made
    shards(lock, root, tmp_path / "run", 4)
    (tmp_path / "run" / "verify-3-of-4.db").unlink()
    code, out, err = run(lock, root, "--merge", tmp_path / "run")
    assert code == ExitCode.ENVIRONMENT
    assert out == ""  # nothing that could read as a verdict
    assert "missing shard(s) 3/4" in err and "Traceback" not in err


def test_an_unfinished_shard_counts_as_missing(
    made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    lock, root, _ = made
    shards(lock, root, tmp_path / "run", 2)
    # A shard killed before its rename leaves only its temporary name.
    (tmp_path / "run" / "verify-2-of-2.db").rename(tmp_path / "run" / ".verify-2-of-2.1-ab.tmp")
    code, _, err = run(lock, root, "--merge", tmp_path / "run")
    assert code == ExitCode.ENVIRONMENT and "missing shard(s) 2/2" in err


@pytest.mark.parametrize("foreign", ["other N", "other lock", "other level", "other copy"])
def test_a_foreign_shard_is_refused(
    made: tuple[Path, Path, Path], tmp_path: Path, foreign: str
) -> None:
    lock, root, other = made
    run_dir = tmp_path / "run"
    shards(lock, root, run_dir, 2)
    stray = tmp_path / "stray"
    if foreign == "other N":
        shards(lock, root, stray, 3)
        shutil.copy(stray / "verify-1-of-3.db", run_dir)
    else:
        lock_used, root_used, extra = lock, root, ()
        if foreign == "other lock":
            lock_used = other
        elif foreign == "other level":
            extra = ("--level", "quick")
        else:
            root_used = tmp_path / "second"
            shutil.copytree(root, root_used)
        shards(lock_used, root_used, stray, 2, *extra)
        shutil.copy(stray / "verify-2-of-2.db", run_dir)  # in place of ours
    code, out, err = run(lock, root, "--merge", run_dir)
    assert code == ExitCode.ENVIRONMENT, err
    assert out == "" and "refused (not of this run)" in err


def test_usage_errors_exit_2(made: tuple[Path, Path, Path], tmp_path: Path) -> None:
    lock, root, _ = made
    run_dir = tmp_path / "run"
    for args, words in [
        (("--shard", "3/2", "--shard-dir", run_dir), "K runs from 1 to N"),
        (("--shard", "x", "--shard-dir", run_dir), "is not K/N"),
        (("--shard", "1/2"), "--shard needs --shard-dir"),
        (("--shard-dir", run_dir), "--shard-dir goes with --shard"),
        (("--shard", "1/2", "--shard-dir", run_dir, "--sample", "0.5"), "needs --seed"),
        (("--merge", run_dir, "--level", "quick"), "--level is not for --merge"),
        (("--merge", run_dir, "--shard", "1/2", "--shard-dir", run_dir), "not with --shard"),
    ]:
        code, _, err = run(lock, root, *args)
        assert code == ExitCode.USAGE, args
        assert words in err, (args, err)
    assert not run_dir.exists()


def test_a_run_folder_inside_the_copy_is_refused(
    made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    lock, pristine, _ = made
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    code, _, err = run(lock, root, "--shard", "1/2", "--shard-dir", root / "run")
    assert code == ExitCode.USAGE and "inside the copy" in err
    assert not (root / "run").exists()
